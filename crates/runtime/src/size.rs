/// Parses a screen or screenshot size written `WIDTHxHEIGHT`, each side 64 to 16384 pixels.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT"))?;
    let w: u32 = w.parse().map_err(|_| format!("bad width in {s:?}"))?;
    let h: u32 = h.parse().map_err(|_| format!("bad height in {s:?}"))?;
    if !(64..=16384).contains(&w) || !(64..=16384).contains(&h) {
        return Err(format!(
            "{s:?}: each side must be between 64 and 16384 pixels"
        ));
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_odd_ones_are_named() {
        assert_eq!(parse_size("1920x1080"), Ok((1920, 1080)));
        for bad in ["1920", "axb", "10x10", "1920x99999"] {
            assert!(parse_size(bad).unwrap_err().contains(bad), "{bad}");
        }
    }
}
