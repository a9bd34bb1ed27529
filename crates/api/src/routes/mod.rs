//! Handlers, one module per resource. Each handler is registered with `.service(handler)` so
//! utoipa collects it.

pub mod admin_agent_actions;
pub mod admin_agents;
pub mod admin_alerts;
pub mod admin_batches;
pub mod admin_customers;
pub mod admin_limits;
pub mod admin_pricing;
pub mod admin_records;
pub mod admin_webhooks;
pub mod agents;
pub mod billing;
pub mod catalog;
pub mod charges;
pub mod connections;
pub mod health;
pub mod messages;
pub mod wiro_callbacks;

use utoipa_actix_web::service_config::ServiceConfig;

/// Customer routes under `/v1`.
pub fn customer(cfg: &mut ServiceConfig<'_>) {
    cfg.service(catalog::list_catalog)
        .service(catalog::get_template)
        .service(agents::list_agents)
        .service(agents::create_agent)
        .service(agents::get_agent)
        .service(agents::update_agent)
        .service(agents::delete_agent)
        .service(agents::start_agent)
        .service(agents::stop_agent)
        .service(connections::connect)
        .service(connections::list_connections)
        .service(connections::disconnect)
        .service(connections::choose_page)
        .service(connections::choose_ad_account)
        .service(connections::choose_customer_id)
        .service(connections::list_folders)
        .service(connections::choose_folders)
        .service(messages::send_message)
        .service(messages::get_message)
        .service(messages::cancel_message)
        .service(messages::list_sessions)
        .service(messages::session_history)
        .service(messages::delete_session)
        .service(billing::get_subscription)
        .service(billing::upgrade)
        .service(billing::cancel)
        .service(billing::downgrade)
        .service(billing::withdraw_downgrade)
        .service(billing::renew)
        .service(billing::buy_credits)
        .service(charges::list_charges)
        .service(wiro_callbacks::message_callback);
}

/// Ops routes under `/v1/admin`.
pub fn admin(cfg: &mut ServiceConfig<'_>) {
    cfg.service(admin_customers::list_customers)
        .service(admin_customers::upsert_customer)
        .service(admin_customers::get_customer)
        .service(admin_customers::suspend_customer)
        .service(admin_customers::reactivate_customer)
        .service(admin_customers::close_customer)
        .service(admin_customers::export_customer)
        .service(admin_limits::get_limits)
        .service(admin_limits::set_limits)
        .service(admin_agents::list_all_agents)
        .service(admin_agents::get_any_agent)
        .service(admin_agents::retry_agent)
        .service(admin_agent_actions::start_any_agent)
        .service(admin_agent_actions::stop_any_agent)
        .service(admin_agent_actions::update_any_agent)
        .service(admin_agent_actions::upgrade_any_agent)
        .service(admin_agent_actions::cancel_any_agent)
        .service(admin_agent_actions::downgrade_any_agent)
        .service(admin_agent_actions::withdraw_downgrade_any_agent)
        .service(admin_agent_actions::renew_any_agent)
        .service(admin_agent_actions::buy_credits_any_agent)
        .service(admin_batches::create_batch)
        .service(admin_batches::get_batch)
        .service(admin_records::list_ledger)
        .service(admin_records::list_audit)
        .service(admin_records::failed_jobs)
        .service(admin_records::retry_job)
        .service(admin_alerts::list_alerts)
        .service(admin_alerts::resolve_alert)
        .service(admin_pricing::get_price_list)
        .service(admin_pricing::set_price)
        .service(admin_pricing::remove_price)
        .service(admin_pricing::customer_statement)
        .service(admin_webhooks::create_endpoint)
        .service(admin_webhooks::list_endpoints)
        .service(admin_webhooks::get_endpoint)
        .service(admin_webhooks::update_endpoint)
        .service(admin_webhooks::delete_endpoint)
        .service(admin_webhooks::rotate_secret)
        .service(admin_webhooks::list_events)
        .service(admin_webhooks::get_event)
        .service(admin_webhooks::replay_event)
        .service(admin_alerts::forecast);
}

/// Health routes at the root.
pub fn health(cfg: &mut ServiceConfig<'_>) {
    cfg.service(health::healthz).service(health::readyz);
}
