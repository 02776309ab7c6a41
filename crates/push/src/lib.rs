//! Push delivery for hattrick (docs/push.md): the FCM HTTP v1 message and its validation, the classification of FCM's
//! answers into what to do with the message and the token, service-account OAuth, the `fcm` and `log`
//! transports, and the fake FCM that tests, benchmarks and the demo send to over a real socket.

pub mod content;
pub mod dispatcher;
pub mod fake;
pub mod histogram;
pub mod message;
pub mod oauth;
pub mod outcome;
pub mod test_send;
pub mod transport;

pub use content::ContentRules;
pub use dispatcher::{Dispatcher, DispatcherSettings, QuietHours};
pub use message::{InvalidMessage, MAX_PAYLOAD_BYTES, PushMessage, Ttl};
pub use oauth::{AuthError, Credentials, METADATA_HOST, MetadataServer, ServiceAccount, TokenSource};
pub use outcome::{Outcome, classify};
pub use transport::{FcmTransport, LogTransport, Transport, TransportError};
