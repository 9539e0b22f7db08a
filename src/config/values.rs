//! The value syntaxes shared with the command line and the rest of the init: durations
//! (`100ms`, `5s`, `2m`) and sizes (`512m`, `8g`).

use std::time::Duration;

use toml::de::DeValue;

use super::*;

/// `dockerd.data_root_tmpfs`: `""` (none) or a size.
pub(super) fn size(f: &Field<'_, '_>) -> Result<Option<String>, Located> {
    match f.item.get_ref() {
        DeValue::String(v) if v.is_empty() => Ok(None),
        DeValue::String(v) => parse_size(v).map(Some).map_err(|m| f.error(m)),
        // A bare number would be bytes to the kernel: almost never what was meant.
        DeValue::Integer(i) => {
            let i = short(&i.to_string()).into_owned();
            Err(f.error(format!(
                "invalid size `{i}`: write a quoted number with a unit, e.g. \"{i}g\""
            )))
        }
        _ => Err(f.type_error("a size string such as \"8g\", or \"\" for none")),
    }
}

/// The largest tmpfs size accepted: 1 PiB, far above any machine, far below overflow.
pub(super) const MAX_SIZE_BYTES: u128 = 1 << 50;

/// Checks a tmpfs size as written in `init.toml`: digits and one unit of `k`, `m`, `g`
/// or `t` (either case, as in a duration; the kernel's and gVisor's tmpfs both read them
/// as powers of 1024), not zero, at most 1 PiB. Returns it as the `size=` mount option takes it.
pub fn parse_size(text: &str) -> Result<String, String> {
    let invalid = |why: &str| {
        format!(
            "invalid size `{}`: {why}; expected a number followed by k, m, g or t, e.g. \"8g\" or \"512m\", or \"\" for none",
            short(text)
        )
    };
    if text.is_empty() {
        return Err(invalid("empty"));
    }
    // The unit is what follows the last digit: `8gb` has the unit `gb`, not "none".
    let number_len = text
        .rfind(|c: char| c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    let (digits, unit) = text.split_at(number_len);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("not a whole number"));
    }
    let shift = match unit.to_ascii_lowercase().as_str() {
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "" => return Err(invalid("no unit")),
        _ => {
            // `8GB`, `512MiB`: the letter the user meant, as the example.
            let example = match unit.chars().next().map(|c| c.to_ascii_lowercase()) {
                Some(c @ ('k' | 'm' | 'g' | 't')) => format!("{digits}{c}"),
                _ => "8g".to_owned(),
            };
            return Err(format!(
                "invalid size `{}`: unknown unit `{}`; use k, m, g or t (powers of 1024), e.g. \"{}\"",
                short(text),
                short(unit),
                short(&example)
            ));
        }
    };
    let value: u128 = match digits.parse() {
        Ok(v) if digits.len() <= 20 => v,
        _ => return Err(invalid("too large")),
    };
    if value == 0 {
        return Err(invalid("zero"));
    }
    if value << shift > MAX_SIZE_BYTES {
        return Err(invalid("larger than 1 PiB"));
    }
    Ok(format!("{value}{}", unit.to_ascii_lowercase()))
}

pub(super) const DURATION_EXPECTED: &str =
    "expected a number followed by ms, s, m or h (e.g. 100ms, 5s, 2m)";

/// Parses a duration as written in `init.toml` and on the command line.
///
/// Grammar: one or more `<digits><unit>` groups with no spaces, signs or fractions, units
/// `h`, `m`, `s`, `ms` in either case (like a size's), each at most once and from
/// largest to smallest: `100ms`, `5s`, `2m`, `1h`, `0s`, `1m30s`, `1s500ms`, `5S`. A bare
/// number (`5`, even `0`) is rejected, since its unit would be a guess. At most
/// [`MAX_DURATION`] (`8760h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err(format!("empty duration: {DURATION_EXPECTED}"));
    }
    let invalid = |why: &str| format!("invalid duration `{}`: {why}", short(text));
    let max_ms = MAX_DURATION.as_millis();
    let mut rest = text;
    let mut total_ms: u128 = 0;
    // Units by size: 3 = h, 2 = m, 1 = s, 0 = ms. Each group must use a smaller one.
    let mut previous_rank = u8::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid(DURATION_EXPECTED));
        }
        let (number, tail) = rest.split_at(digits);
        if tail.starts_with('.') {
            return Err(invalid(
                "fractions are not supported, use a smaller unit (e.g. 1500ms)",
            ));
        }
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        // Either case, as for sizes: `5S` and `2M` (minutes: there is no month or
        // mega among these units) are what `5s` and `2m` are.
        let (rank, unit_ms): (u8, u128) = match unit.to_ascii_lowercase().as_str() {
            "h" => (3, 3_600_000),
            "m" => (2, 60_000),
            "s" => (1, 1_000),
            "ms" => (0, 1),
            _ => return Err(invalid(DURATION_EXPECTED)),
        };
        if rank >= previous_rank {
            return Err(invalid(
                "units must go from largest to smallest, each at most once (e.g. 1m30s)",
            ));
        }
        previous_rank = rank;
        // Only digits remain, so parsing fails only on overflow.
        let too_large = || invalid("too large (at most 8760h)");
        let value: u64 = number.parse().map_err(|_| too_large())?;
        total_ms += u128::from(value) * unit_ms;
        if total_ms > max_ms {
            return Err(too_large());
        }
        rest = tail;
    }
    let millis = u64::try_from(total_ms).map_err(|_| invalid("too large (at most 8760h)"))?;
    Ok(Duration::from_millis(millis))
}

/// Formats a duration the way [`parse_duration`] reads it: `0s`, `100ms`, `5s`, `2m`,
/// `1m30s`, `1h`. Sub-millisecond parts are dropped (config values never have them).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, unit_ms) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        let count = ms / unit_ms;
        ms %= unit_ms;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(unit);
        }
    }
    out
}
