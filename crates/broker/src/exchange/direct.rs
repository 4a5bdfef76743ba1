//! Direct exchange: a binding matches when its key equals the routing key.

use std::collections::HashMap;

use super::{Destination, Route};

pub struct DirectTable {
    by_key: HashMap<String, Vec<Destination>>,
}

impl DirectTable {
    pub fn new(routes: Vec<Route>) -> Self {
        let mut by_key: HashMap<String, Vec<Destination>> = HashMap::new();
        for r in routes {
            by_key.entry(r.routing_key).or_default().push(r.destination);
        }
        DirectTable { by_key }
    }

    pub fn matches(&self, routing_key: &str, out: &mut dyn FnMut(&Destination)) {
        if let Some(ds) = self.by_key.get(routing_key) {
            ds.iter().for_each(out);
        }
    }
}
