//! Screenshots for the window tests: an X window dump (`xwd`, ZPixmap, 24/32 bits per pixel)
//! decoded into RGB and written as a PNG (stored deflate blocks: large but dependency-free).

#![allow(dead_code)]

/// An RGB image.
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<[u8; 3]>,
}

fn be32(data: &[u8], at: usize) -> Result<u32, String> {
    data.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| format!("xwd: truncated header at byte {at}"))
}

/// Decodes an `xwd` dump.
pub fn decode_xwd(data: &[u8]) -> Result<Rgb, String> {
    let field = |i: usize| be32(data, i * 4);
    let header_size = field(0)? as usize;
    if field(1)? != 7 {
        return Err(format!("xwd: version {} (expected 7)", field(1)?));
    }
    if field(2)? != 2 {
        return Err("xwd: not a ZPixmap".into());
    }
    let width = field(4)? as usize;
    let height = field(5)? as usize;
    let byte_order = field(7)?;
    let bits_per_pixel = field(11)? as usize;
    let bytes_per_line = field(12)? as usize;
    let masks = [field(13 + 1)?, field(13 + 2)?, field(13 + 3)?];
    let ncolors = field(19)? as usize;
    if bits_per_pixel != 32 && bits_per_pixel != 24 {
        return Err(format!(
            "xwd: {bits_per_pixel} bits per pixel is not supported"
        ));
    }
    let start = header_size + ncolors * 12;
    let bpp = bits_per_pixel / 8;
    let need = start + bytes_per_line * height;
    if data.len() < need {
        return Err(format!("xwd: {} bytes, expected {need}", data.len()));
    }
    let channel = |value: u32, mask: u32| -> u8 {
        if mask == 0 {
            return 0;
        }
        let shifted = (value & mask) >> mask.trailing_zeros();
        let max = mask >> mask.trailing_zeros();
        (shifted * 255 / max) as u8
    };
    let mut pixels = Vec::with_capacity(width * height);
    for y in 0..height {
        let row = &data[start + y * bytes_per_line..];
        for x in 0..width {
            let p = &row[x * bpp..x * bpp + bpp];
            let mut bytes = [0u8; 4];
            bytes[..bpp].copy_from_slice(p);
            let value = if byte_order == 0 {
                u32::from_le_bytes(bytes)
            } else if bpp == 4 {
                u32::from_be_bytes(bytes)
            } else {
                u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]])
            };
            pixels.push([
                channel(value, masks[0]),
                channel(value, masks[1]),
                channel(value, masks[2]),
            ]);
        }
    }
    Ok(Rgb {
        width,
        height,
        pixels,
    })
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// Encodes `image` as a PNG.
pub fn encode_png(image: &Rgb) -> Vec<u8> {
    let mut raw = Vec::with_capacity(image.height * (1 + image.width * 3));
    for y in 0..image.height {
        raw.push(0); // filter: none
        for p in &image.pixels[y * image.width..(y + 1) * image.width] {
            raw.extend_from_slice(p);
        }
    }
    // zlib stream of stored blocks.
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + byte as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(image.width as u32).to_be_bytes());
    ihdr.extend_from_slice(&(image.height as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}
