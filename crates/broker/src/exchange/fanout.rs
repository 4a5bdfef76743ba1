//! Fanout exchange: every binding matches, whatever the routing key.

use super::{Destination, Route};

pub struct FanoutTable {
    all: Vec<Destination>,
}

impl FanoutTable {
    pub fn new(routes: Vec<Route>) -> Self {
        FanoutTable {
            all: routes.into_iter().map(|r| r.destination).collect(),
        }
    }

    pub fn matches(&self, out: &mut dyn FnMut(&Destination)) {
        self.all.iter().for_each(out);
    }
}
