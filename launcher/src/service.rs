//! The services of a Conveyor stack, one binary each, and what each listens on.

use std::fmt;
use std::str::FromStr;

/// One Conveyor binary, run as one (or, for workers, several) processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Consumer,
    Worker,
    Webhook,
    Dashboard,
    Producer,
}

impl Service {
    /// Every service, in start order (the producer last: it needs the consumer).
    pub const ALL: [Service; 5] = [
        Service::Consumer,
        Service::Worker,
        Service::Webhook,
        Service::Dashboard,
        Service::Producer,
    ];

    /// The service's name: its binary, its compose service and its `/healthz` `service` field.
    pub fn name(self) -> &'static str {
        match self {
            Service::Consumer => "consumer",
            Service::Worker => "worker",
            Service::Webhook => "webhook",
            Service::Dashboard => "dashboard",
            Service::Producer => "producer",
        }
    }

    /// Whether it serves HTTP (`/healthz`); the producer only sends.
    pub fn listens(self) -> bool {
        self != Service::Producer
    }

    /// Whether a start also waits for `/readyz` (Redis and Elasticsearch reachable).
    pub fn has_readyz(self) -> bool {
        matches!(self, Service::Consumer | Service::Worker)
    }

    /// The environment variable a person sets to move its (first) port in native mode.
    pub fn port_var(self) -> &'static str {
        match self {
            Service::Consumer => "CONSUMER_PORT",
            Service::Worker => "WORKER_BASE_PORT",
            Service::Webhook => "WEBHOOK_PORT",
            Service::Dashboard => "DASHBOARD_PORT",
            Service::Producer => "",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|svc| svc.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Service::ALL.iter().map(|s| s.name()).collect();
                format!("no service `{s}` (one of: {})", names.join(", "))
            })
    }
}
