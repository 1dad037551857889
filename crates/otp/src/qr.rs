//! QR images of an enrolment URI, as SVG text or PNG bytes.
//!
//! `qrcode` (without its `image` feature) computes the modules and renders SVG; PNG
//! is a 1-bit greyscale image written by the `png` crate. That keeps the `image`
//! crate and its codecs out of the build for one black-and-white picture.

use qrcode::{Color, EcLevel, QrCode};

use crate::{OtpAuthUri, QrError};

/// White border in modules; the QR specification asks for four.
const QUIET_ZONE: usize = 4;
/// Largest accepted pixels-per-module, which bounds the image size.
pub const MAX_SCALE: u32 = 32;

fn encode(text: &str) -> Result<QrCode, QrError> {
    // Level M: the usual choice for screens (15% recovery) without growing the code much.
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|_| QrError::TooLong)
}

/// An SVG document of the URI's QR code, at least `min_px` pixels square.
pub fn qr_svg(uri: &OtpAuthUri, min_px: u32) -> Result<String, QrError> {
    let code = encode(uri.expose())?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(min_px, min_px)
        .quiet_zone(true)
        .build())
}

/// A PNG of the URI's QR code with `scale` pixels per module (1 ..= [`MAX_SCALE`];
/// 8 gives a ~400 px image for a typical TOTP URI).
pub fn qr_png(uri: &OtpAuthUri, scale: u32) -> Result<Vec<u8>, QrError> {
    payload_qr_png(uri.expose(), scale)
}

/// A PNG QR code of any enrolment payload (a push enrolment URI, say), as
/// [`qr_png`] draws an otpauth URI.
pub fn payload_qr_png(payload: &str, scale: u32) -> Result<Vec<u8>, QrError> {
    if scale == 0 || scale > MAX_SCALE {
        return Err(QrError::BadScale { max: MAX_SCALE });
    }
    let code = encode(payload)?;
    let modules = code.width();
    let colors = code.to_colors();
    let scale = scale as usize;
    let side = (modules + 2 * QUIET_ZONE) * scale;
    let row_bytes = side.div_ceil(8);
    // 1-bit greyscale: a set bit is white. Start all white, then paint dark modules.
    let mut pixels = vec![0xffu8; row_bytes * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
        for y in my * scale..(my + 1) * scale {
            for x in mx * scale..(mx + 1) * scale {
                pixels[y * row_bytes + x / 8] &= !(0x80u8 >> (x % 8));
            }
        }
    }
    let side_u32 = u32::try_from(side).map_err(|_| QrError::TooLong)?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side_u32, side_u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(out)
}
