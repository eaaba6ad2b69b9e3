//! Output format negotiation for resource requests, from the Accept header: JSON or YAML (for
//! anything but a watch, whose stream has only a JSON framing here). A request accepting neither
//! is refused with 406 NotAcceptable before it runs, as kube-apiserver does. Protobuf output is
//! not offered: nanokube reads protobuf bodies but writes JSON, and protobuf clients (kubectl,
//! client-go) always accept JSON too.

use super::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

pub const YAML: &str = "application/yaml";

/// The format to answer in, or the 406 to answer with.
pub fn output(accept: &str, watch: bool) -> Result<Format, ApiError> {
    if accept.trim().is_empty() {
        return Ok(Format::Json);
    }
    // (q, position, media type): the client's preference, ties kept in its order.
    let mut ranges: Vec<(f32, usize, String)> = accept
        .split(',')
        .enumerate()
        .filter_map(|(i, range)| {
            let mut parts = range.split(';');
            let media = parts.next()?.trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (q > 0.0 && !media.is_empty()).then_some((q, i, media))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, media) in &ranges {
        match media.as_str() {
            "application/json" | "application/*" | "*/*" => return Ok(Format::Json),
            YAML if !watch => return Ok(Format::Yaml),
            _ => {}
        }
    }
    let accepted = if watch {
        "application/json"
    } else {
        "application/json, application/yaml"
    };
    Err(ApiError::NotAcceptable(format!(
        "only the following media types are accepted: {accepted}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_by_preference_and_refuses_the_rest() {
        assert_eq!(output("", false).unwrap(), Format::Json);
        assert_eq!(output("application/yaml", false).unwrap(), Format::Yaml);
        assert_eq!(
            output("application/yaml;q=0.5, application/json", false).unwrap(),
            Format::Json
        );
        assert_eq!(
            output(
                "application/vnd.kubernetes.protobuf, application/yaml",
                false
            )
            .unwrap(),
            Format::Yaml
        );
        assert_eq!(
            output(
                "application/json;as=Table;v=v1;g=meta.k8s.io, application/json",
                false
            )
            .unwrap(),
            Format::Json
        );
        assert_eq!(
            output("text/html,application/xml;q=0.9,*/*;q=0.8", false).unwrap(),
            Format::Json
        );
        let e = output("application/xml", false).unwrap_err();
        assert_eq!(e.code(), 406);
        assert_eq!(
            e.to_string(),
            "only the following media types are accepted: application/json, application/yaml"
        );
        assert!(output("application/json;q=0", false).is_err());
        assert!(output("application/yaml", true).is_err());
    }
}
