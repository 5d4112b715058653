//! The broker transports, one folder per protocol, sharing one AMQP 0-9-1 topology.
//!
//! `v091` speaks AMQP 0-9-1 (lapin) throughout; `v10` carries the events over AMQP 1.0
//! (fe2o3-amqp) but manages the same exchange, queue and bindings over 0-9-1, so nodes of
//! both kinds share an exchange. `topology` is that shared part, `rooms` the bookkeeping of
//! which rooms the node's queue should be bound to.

mod rooms;
mod topology;
#[cfg(feature = "amqp091")]
pub mod v091;
#[cfg(feature = "amqp10")]
pub mod v10;
