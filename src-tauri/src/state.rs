use std::sync::Arc;

use clawdesk_store::Store;

/// What every command can reach: the handles of the headless engine.
pub struct AppState {
    pub store: Arc<Store>,
}
