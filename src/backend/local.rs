//! The local side of the seam: one process's hub (in memory) and store (SQLite, on its
//! own thread). What a single node has always served from.

use std::sync::Arc;

use crate::hub::{Hub, HubConfig};
use crate::metrics::Metrics;
use crate::store::Store;

#[derive(Debug)]
pub struct Local {
    hub: Hub,
    store: Store,
}

impl Local {
    /// A hub made with `config`, counting into `metrics`, over `store`.
    pub fn new(store: Store, config: HubConfig, metrics: Arc<Metrics>) -> Self {
        Local {
            hub: Hub::counted(config, metrics),
            store,
        }
    }

    /// The store, for the admin socket's commands on it.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The hub, for the admin socket's look at who is online.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}
