//! Every subject Vigil uses: `vigil.<domain>.<event>` for events (captured by
//! JetStream) and `vigil.rpc.<service>.<method>` for request/reply (never
//! captured by a stream, or JetStream would answer the requests itself).

pub const PROVIDER_CREATED: &str = "vigil.provider.created";
pub const PROVIDER_UPDATED: &str = "vigil.provider.updated";
pub const USER_CREATED: &str = "vigil.user.created";
pub const USER_STATUS_CHANGED: &str = "vigil.user.status_changed";
pub const USER_DELETED: &str = "vigil.user.deleted";
pub const CHALLENGE_CREATED: &str = "vigil.challenge.created";
pub const CHALLENGE_COMPLETED: &str = "vigil.challenge.completed";
pub const CHALLENGE_DELIVERED: &str = "vigil.challenge.delivered";
pub const DELIVERY_REQUESTED: &str = "vigil.delivery.requested";
pub const DELIVERY_STATUS: &str = "vigil.delivery.status";
pub const DELIVERY_ANSWERED: &str = "vigil.delivery.answered";
pub const USAGE_AUTHENTICATION: &str = "vigil.usage.authentication";
pub const USAGE_TELEPHONY: &str = "vigil.usage.telephony";
pub const FRAUD_REPORTED: &str = "vigil.fraud.reported";

pub const RPC_CHALLENGE_PREAUTH: &str = "vigil.rpc.challenge.preauth";
pub const RPC_CHALLENGE_START: &str = "vigil.rpc.challenge.start";
pub const RPC_CHALLENGE_VERIFY: &str = "vigil.rpc.challenge.verify";
pub const RPC_CHALLENGE_STATUS: &str = "vigil.rpc.challenge.status";
pub const RPC_CHALLENGE_CREATE_USER: &str = "vigil.rpc.challenge.create_user";
pub const RPC_CHALLENGE_GET_USER: &str = "vigil.rpc.challenge.get_user";
pub const RPC_CHALLENGE_UPDATE_USER: &str = "vigil.rpc.challenge.update_user";
pub const RPC_CHALLENGE_DELETE_USER: &str = "vigil.rpc.challenge.delete_user";
pub const RPC_CHALLENGE_LIST_USERS: &str = "vigil.rpc.challenge.list_users";
pub const RPC_CHALLENGE_IMPORT_USERS: &str = "vigil.rpc.challenge.import_users";
pub const RPC_CHALLENGE_EXPLAIN: &str = "vigil.rpc.challenge.explain";
pub const RPC_CHALLENGE_ENROLL_FACTOR: &str = "vigil.rpc.challenge.enroll_factor";
pub const RPC_CHALLENGE_RESYNC_HOTP: &str = "vigil.rpc.challenge.resync_hotp";
pub const RPC_CHALLENGE_LIST_AUDIT: &str = "vigil.rpc.challenge.list_audit";
pub const RPC_CHALLENGE_ENROLL_DEVICE: &str = "vigil.rpc.challenge.enroll_device";
