//! Messages written for the command line, said for the window: "pass -var NAME=VALUE"
//! becomes "fill in NAME on the Variables form", "kiln credentials set NAME" becomes the
//! Credentials place's button. The engine and the loader keep one wording (the CLI's); the
//! window translates what it shows.

/// `message` in the window's words.
pub fn for_the_window(message: &str) -> String {
    let mut text = message.to_string();
    for (cli, window) in [
        (" or a -var-file that sets it", ""),
        (
            "store a profile with `kiln credentials set NAME` (the first one becomes the default) and pass --profile NAME",
            "add a profile in Credentials (Add a profile…) and choose it under Exoscale credentials",
        ),
        (
            "pass --profile NAME or make one the default with `kiln credentials set NAME --default`",
            "choose a profile under Exoscale credentials, or make one the default in Credentials",
        ),
    ] {
        text = text.replace(cli, window);
    }
    text = replace_named(&text, "pass -var ", "=VALUE", |name| {
        format!("fill in `{name}` on the Variables form")
    });
    text = replace_named(&text, "add it with `kiln credentials set ", "`", |name| {
        format!("add the profile `{name}` in Credentials (Add a profile…)")
    });
    replace_named(
        &text,
        "store it again with `kiln credentials set ",
        "`",
        |name| format!("save the profile `{name}` again in Credentials"),
    )
}

/// Replaces every `{before}NAME{after}` (NAME without spaces) with `with(NAME)`.
fn replace_named(text: &str, before: &str, after: &str, with: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(before) {
        let tail = &rest[start + before.len()..];
        match tail.find(after) {
            Some(end) if end > 0 && !tail[..end].contains(char::is_whitespace) => {
                out.push_str(&rest[..start]);
                out.push_str(&with(&tail[..end]));
                rest = &tail[end + after.len()..];
            }
            _ => {
                out.push_str(&rest[..start + before.len()]);
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_advice_is_said_for_the_window() {
        assert_eq!(
            for_the_window(
                "variables.bucket: required variable `bucket` is not set: pass -var bucket=VALUE or a -var-file that sets it"
            ),
            "variables.bucket: required variable `bucket` is not set: fill in `bucket` on the Variables form"
        );
        assert_eq!(
            for_the_window(
                "exoscale-import: no credentials profile `work` (known: a): add it with `kiln credentials set work`"
            ),
            "exoscale-import: no credentials profile `work` (known: a): add the profile `work` in Credentials (Add a profile…)"
        );
        assert!(
            for_the_window("no Exoscale credentials: set EXOSCALE_API_KEY and EXOSCALE_API_SECRET, or store a profile with `kiln credentials set NAME` (the first one becomes the default) and pass --profile NAME")
                .ends_with("add a profile in Credentials (Add a profile…) and choose it under Exoscale credentials")
        );
        // Text without the advice is left as it is, even with half a pattern.
        assert_eq!(for_the_window("pass -var x y"), "pass -var x y");
    }
}
