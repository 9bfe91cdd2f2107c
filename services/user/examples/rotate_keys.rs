//! One rotation step of a JWT signing-key folder: `current.pem` → `retired-<now>.pem`,
//! `next.pem` → `current.pem`, and a fresh `next.pem` (see the README's rotation procedure).
//!
//! `cargo run -p mirai-user --example rotate_keys -- <folder>`

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: rotate_keys <folder holding current.pem and next.pem>");
        return ExitCode::from(64);
    };
    match mirai_user::keys::rotate(std::path::Path::new(&dir), chrono::Utc::now()) {
        Ok(()) => {
            println!(
                "rotated {dir}: the former next key signs now; update the Secret and roll the user service"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("rotate_keys: {error}");
            ExitCode::FAILURE
        }
    }
}
