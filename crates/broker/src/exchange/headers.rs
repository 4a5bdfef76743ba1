//! Headers exchange: bindings match on message headers, with `x-match` = `all` (default),
//! `any`, `all-with-x` or `any-with-x`. Keys starting with `x-` are ignored unless the
//! `-with-x` variant is used; a binding value of type void only requires the key's presence.

use warren_amqp::{AMQPValue, FieldTable};

use super::{Destination, Route};
use crate::args::{as_str, values_equal};

pub struct HeadersTable {
    routes: Vec<Route>,
}

impl HeadersTable {
    pub fn new(routes: Vec<Route>) -> Self {
        HeadersTable { routes }
    }

    pub fn matches(&self, headers: Option<&FieldTable>, out: &mut dyn FnMut(&Destination)) {
        let empty = FieldTable::default();
        let headers = headers.unwrap_or(&empty);
        for r in &self.routes {
            if binding_matches(&r.arguments, headers) {
                out(&r.destination);
            }
        }
    }
}

pub fn binding_matches(binding: &FieldTable, headers: &FieldTable) -> bool {
    let mode = binding
        .inner()
        .get("x-match")
        .and_then(as_str)
        .unwrap_or_else(|| "all".to_string());
    let (any, with_x) = match mode.as_str() {
        "any" => (true, false),
        "any-with-x" => (true, true),
        "all-with-x" => (false, true),
        _ => (false, false),
    };
    let mut considered = binding
        .inner()
        .iter()
        .filter(|(k, _)| k.as_str() != "x-match" && (with_x || !k.as_str().starts_with("x-")))
        .map(|(k, v)| match headers.inner().get(k.as_str()) {
            None => false,
            Some(_) if matches!(v, AMQPValue::Void) => true,
            Some(h) => values_equal(v, h),
        });
    if any {
        considered.any(|ok| ok)
    } else {
        considered.all(|ok| ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_amqp::{LongString, ShortString};

    fn table(pairs: &[(&str, &str)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(
                ShortString::from(*k),
                AMQPValue::LongString(LongString::from(v.as_bytes().to_vec())),
            );
        }
        t
    }

    #[test]
    fn all_and_any() {
        let h = table(&[("format", "pdf"), ("type", "report")]);
        assert!(binding_matches(
            &table(&[("format", "pdf"), ("type", "report")]),
            &h
        ));
        assert!(!binding_matches(
            &table(&[("format", "pdf"), ("type", "log")]),
            &h
        ));
        assert!(binding_matches(
            &table(&[("x-match", "any"), ("format", "pdf"), ("type", "log")]),
            &h
        ));
        assert!(!binding_matches(
            &table(&[("x-match", "any"), ("a", "b")]),
            &h
        ));
    }
}
