//! Topic exchange: dot-separated words, `*` matches exactly one word, `#` zero or more.
//!
//! Bindings are kept in a trie keyed by word so that a publish walks only the branches its
//! words (and the wildcards) can reach, instead of testing every binding.

use std::collections::HashMap;

use super::{Destination, Route};

#[derive(Default)]
struct Node {
    children: HashMap<String, Node>,
    star: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    destinations: Vec<Destination>,
}

pub struct TopicTable {
    root: Node,
}

impl TopicTable {
    pub fn new(routes: Vec<Route>) -> Self {
        let mut root = Node::default();
        for r in routes {
            let mut node = &mut root;
            for word in r.routing_key.split('.') {
                node = match word {
                    "*" => node.star.get_or_insert_with(Default::default),
                    "#" => node.hash.get_or_insert_with(Default::default),
                    w => node.children.entry(w.to_string()).or_default(),
                };
            }
            node.destinations.push(r.destination);
        }
        TopicTable { root }
    }

    pub fn matches(&self, routing_key: &str, out: &mut dyn FnMut(&Destination)) {
        let words: Vec<&str> = routing_key.split('.').collect();
        // A destination bound by two patterns that both match must be reported once; the
        // caller de-duplicates queues, so visiting a node twice is harmless but wasteful.
        walk(&self.root, &words, out);
    }
}

fn walk(node: &Node, words: &[&str], out: &mut dyn FnMut(&Destination)) {
    if let Some(hash) = &node.hash {
        // `#` may swallow zero or more words.
        for skip in 0..=words.len() {
            walk(hash, &words[skip..], out);
        }
    }
    match words.split_first() {
        None => node.destinations.iter().for_each(out),
        Some((first, rest)) => {
            if let Some(child) = node.children.get(*first) {
                walk(child, rest, out);
            }
            if let Some(star) = &node.star {
                walk(star, rest, out);
            }
        }
    }
}

/// Whether `pattern` matches `routing_key` (used by tests and by policy-free callers).
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    fn m(p: &[&str], w: &[&str]) -> bool {
        match p.split_first() {
            None => w.is_empty(),
            Some((&"#", rest)) => (0..=w.len()).any(|i| m(rest, &w[i..])),
            Some((&"*", rest)) => !w.is_empty() && m(rest, &w[1..]),
            Some((word, rest)) => w.first() == Some(word) && m(rest, &w[1..]),
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let w: Vec<&str> = routing_key.split('.').collect();
    m(&p, &w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_rabbitmq() {
        assert!(topic_matches("*.orange.*", "quick.orange.rabbit"));
        assert!(!topic_matches("*.orange.*", "quick.orange.male.rabbit"));
        assert!(topic_matches("lazy.#", "lazy"));
        assert!(topic_matches("lazy.#", "lazy.orange.male.rabbit"));
        assert!(topic_matches("#", ""));
        assert!(topic_matches("#.rabbit", "rabbit"));
        assert!(!topic_matches("*.*.rabbit", "quick.rabbit"));
        assert!(topic_matches("a.#.z", "a.z"));
        assert!(topic_matches("a.#.z", "a.b.c.z"));
    }
}
