//! Any datagram through decode, re-encode, request validation, password
//! reveal and response signing: nothing may panic, and what decodes must
//! re-encode to the same octets.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use vigil_radius::{
    Code, RadiusClient, Response, SharedSecret, StaticClients, sign_request, unhide_password, validate_request,
    verify_response,
};

const SECRET: &[u8] = b"fuzzing-secret";

fuzz_target!(|data: &[u8]| {
    let source: SocketAddr = "192.0.2.10:40000".parse().unwrap();
    let registry = StaticClients::new().with(
        "0.0.0.0/0".parse().unwrap(),
        RadiusClient { id: "fuzz".into(), secret: SharedSecret::new(SECRET) },
    );

    // Raw bytes as they come off the socket: almost always dropped, never a panic.
    let _ = validate_request(data, source, &registry);
    let _ = verify_response(data, &[0; 16], SECRET);
    let _ = unhide_password(data, SECRET, &[7; 16]);

    let Ok(packet) = vigil_radius::Packet::decode(data) else { return };
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    assert_eq!(packet.encode().unwrap(), &data[..len], "decode/encode must round-trip");

    // Reach the code behind the Message-Authenticator check: sign what decoded
    // and run the whole request path, down to a signed response.
    if packet.code == Code::AccessRequest {
        if let Ok(signed) = sign_request(&packet, SECRET) {
            let request = validate_request(&signed, source, &registry).expect("a signed request validates");
            let _ = request.password();
            let _ = (request.user_name(), request.state(), request.nas_ip_address(), request.calling_station_id());
            let ctx = request.reply_context();
            let reply = Response::challenge(b"state".to_vec()).with_reply_message("Enter the code");
            if let Ok(bytes) = reply.encode(&ctx) {
                assert!(verify_response(&bytes, &packet.authenticator, SECRET));
            }
        }
    }
});
