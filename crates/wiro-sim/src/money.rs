//! Wallet amounts are kept in cents so sums never drift; Wiro shows dollars.

/// Cents from dollars, rounded to the nearest cent.
pub fn cents(dollars: f64) -> i64 {
    (dollars * 100.0).round() as i64
}

/// Dollars from cents.
pub fn dollars(cents: i64) -> f64 {
    cents as f64 / 100.0
}

/// `$X` as Wiro prints it in wallet errors.
pub fn wallet_error(required: i64, available: i64) -> String {
    format!(
        "Insufficient wallet balance. Required: ${}, Available: ${}",
        wiro_client::wiro_error::format_dollars(dollars(required)),
        wiro_client::wiro_error::format_dollars(dollars(available))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_formats() {
        assert_eq!(cents(11.33), 1133);
        assert_eq!(dollars(1133), 11.33);
        assert_eq!(
            wallet_error(2900, 1133),
            "Insufficient wallet balance. Required: $29, Available: $11.33"
        );
    }
}
