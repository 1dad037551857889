//! Enrols a demo TOTP token and writes its QR code, to scan with a real app:
//! `cargo run -p vigil-otp --example enrol -- /tmp/totp.png /tmp/totp.svg`
//! The seed is random and printed: a demo, not a real enrolment.

use std::process::ExitCode;

use vigil_otp::{Enrolment, Totp};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [png_path, svg_path] = args.as_slice() else {
        eprintln!("usage: enrol <out.png> <out.svg>");
        return ExitCode::FAILURE;
    };
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let e = Enrolment::totp(&mut rand::rng(), &Totp::default(), "Vigil Demo", "alice@example.com")?;
        std::fs::write(png_path, e.qr_png(8)?)?;
        std::fs::write(svg_path, e.qr_svg(256)?)?;
        println!("{}", e.uri.expose());
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("enrol: {err}");
            ExitCode::FAILURE
        }
    }
}
