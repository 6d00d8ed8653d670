//! Captures the fields of `tracing` events on one target.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One event's fields, as text.
pub type Fields = BTreeMap<String, String>;

/// A `tracing_subscriber` layer recording the events of `target`.
#[derive(Clone)]
pub struct Capture {
    target: &'static str,
    events: Arc<Mutex<Vec<Fields>>>,
}

impl Capture {
    pub fn new(target: &'static str) -> Self {
        Self {
            target,
            events: Arc::default(),
        }
    }

    /// The events recorded so far.
    pub fn events(&self) -> Vec<Fields> {
        self.events.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.events.lock().unwrap().clear();
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Visitor(Fields);
        impl tracing::field::Visit for Visitor {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
        }
        if event.metadata().target() == self.target {
            let mut visitor = Visitor(Fields::new());
            event.record(&mut visitor);
            self.events.lock().unwrap().push(visitor.0);
        }
    }
}
