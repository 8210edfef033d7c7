//! A chat-completions request turned into a policy request: OpenAI messages into the model's
//! chat messages, image parts decoded within the server's limits, sampling settings checked.

use std::io::Cursor;

use base64::Engine;
use clawdesk_model::chat::{FunctionCall, Message, Part, Role, ToolCall};
use clawdesk_model::generate::Sampling;
use image::DynamicImage;

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::wire::{ChatMessage, ChatRequest, Content, ContentPart};

/// Where an image part's bytes come from, before they are fetched or decoded.
pub enum ImageSource {
    /// The bytes of a base64 `data:` URL, decoded from base64 but not yet as an image.
    Data(Vec<u8>),
    /// An `http(s)://` URL still to be fetched.
    Remote(String),
}

/// The model's messages (each image part a placeholder) and the image sources in order.
pub fn messages(
    request: &ChatRequest,
    config: &ServerConfig,
) -> Result<(Vec<Message>, Vec<ImageSource>), ApiError> {
    if request.messages.is_empty() {
        return Err(ApiError::BadRequest("`messages` is empty".into()));
    }
    let mut sources = Vec::new();
    let mut out = Vec::with_capacity(request.messages.len());
    for (i, m) in request.messages.iter().enumerate() {
        out.push(message(m, i, config, &mut sources)?);
    }
    if sources.len() > config.max_images {
        return Err(ApiError::TooLarge(format!(
            "{} images in one request; this server takes at most {}",
            sources.len(),
            config.max_images
        )));
    }
    Ok((out, sources))
}

fn message(
    m: &ChatMessage,
    index: usize,
    config: &ServerConfig,
    sources: &mut Vec<ImageSource>,
) -> Result<Message, ApiError> {
    let role = match m.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            return Err(ApiError::BadRequest(format!(
                "messages[{index}]: unknown role `{other}`"
            )));
        }
    };
    let content = match &m.content {
        None => Vec::new(),
        Some(Content::Text(text)) => vec![Part::Text { text: text.clone() }],
        Some(Content::Parts(parts)) => parts
            .iter()
            .map(|p| match p {
                ContentPart::Text { text } => Ok(Part::Text { text: text.clone() }),
                ContentPart::ImageUrl { image_url } => {
                    if role != Role::User {
                        return Err(ApiError::BadRequest(format!(
                            "messages[{index}]: only user messages may carry images"
                        )));
                    }
                    sources.push(source(image_url.url(), index, config)?);
                    Ok(Part::Image)
                }
            })
            .collect::<Result<_, _>>()?,
    };
    let tool_calls = m
        .tool_calls
        .iter()
        .map(|call| ToolCall {
            function: FunctionCall {
                name: call.function.name.clone(),
                // The template writes arguments with `tojson`: an object, not a string of one.
                arguments: match &call.function.arguments {
                    serde_json::Value::String(s) => serde_json::from_str(s)
                        .unwrap_or_else(|_| serde_json::Value::String(s.clone())),
                    other => other.clone(),
                },
            },
        })
        .collect();
    Ok(Message {
        role,
        content,
        tool_calls,
    })
}

fn source(url: &str, index: usize, config: &ServerConfig) -> Result<ImageSource, ApiError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let Some((meta, data)) = rest.split_once(',') else {
            return Err(ApiError::BadRequest(format!(
                "messages[{index}]: a data URL without a comma"
            )));
        };
        if !meta.ends_with(";base64") {
            return Err(ApiError::BadRequest(format!(
                "messages[{index}]: image data URLs must be base64"
            )));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| ApiError::BadRequest(format!("messages[{index}]: bad base64: {e}")))?;
        return Ok(ImageSource::Data(bytes));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        if !config.allow_remote_images {
            return Err(ApiError::BadRequest(format!(
                "messages[{index}]: remote image URLs are off on this server; send the image \
                 as a data URL (or start it with remote images allowed)"
            )));
        }
        return Ok(ImageSource::Remote(url.to_owned()));
    }
    Err(ApiError::BadRequest(format!(
        "messages[{index}]: an image URL must be a data: or http(s): URL"
    )))
}

/// An image's size and format from its header alone, refusing one with more pixels than
/// allowed.
fn header(
    bytes: &[u8],
    max_pixels: u64,
) -> Result<(u32, u32, Option<image::ImageFormat>), ApiError> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ApiError::BadRequest(format!("an image that cannot be read: {e}")))?;
    let format = reader.format();
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| ApiError::BadRequest(format!("an image that cannot be read: {e}")))?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(ApiError::TooLarge(format!(
            "an image of {w}×{h} pixels; this server takes at most {max_pixels} pixels per image"
        )));
    }
    Ok((w, h, format))
}

/// The pixels an image will take once decoded, from its header (refused over `max_pixels`).
pub fn image_pixels(bytes: &[u8], max_pixels: u64) -> Result<u64, ApiError> {
    let (w, h, _) = header(bytes, max_pixels)?;
    Ok(u64::from(w) * u64::from(h))
}

/// Decodes one image, refusing from its header alone one with more pixels than allowed (a
/// small file can declare a huge image).
pub fn decode_image(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage, ApiError> {
    let (w, h, format) = header(bytes, max_pixels)?;
    let mut reader = image::ImageReader::new(Cursor::new(bytes));
    if let Some(format) = format {
        reader.set_format(format);
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| ApiError::BadRequest(format!("an image that does not decode: {e}")))
}

/// A small, valid PNG that declares a `width`×`height` image with almost no pixel data: what an
/// attacker sends to make a server that decodes before it checks allocate gigabytes. For
/// probing the limits (`clawdesk bench serve`, the tests).
pub fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = width.to_be_bytes().to_vec();
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    // The zlib stream of nothing: the rows never come.
    let empty_zlib = [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01];
    for (kind, data) in [
        (b"IHDR", &header[..]),
        (b"IDAT", &empty_zlib[..]),
        (b"IEND", &[][..]),
    ] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32fast::hash(&png[start..]);
        png.extend_from_slice(&crc.to_be_bytes());
    }
    png
}

/// Refuses, naming the field, what a client asks for that this server does not do: a field
/// accepted and ignored would give the client a reply it did not ask for without a word.
fn refuse_unserved(request: &ChatRequest) -> Result<(), ApiError> {
    let refuse = |field: &str, detail: &str| {
        Err(ApiError::BadRequest(format!(
            "{field} is not served here ({detail})"
        )))
    };
    for (field, value) in [
        ("presence_penalty", request.presence_penalty),
        ("frequency_penalty", request.frequency_penalty),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return refuse(field, "only 0 is");
        }
    }
    match &request.logit_bias {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(bias)) if bias.is_empty() => {}
        Some(_) => return refuse("logit_bias", "only an empty one is"),
    }
    match &request.response_format {
        None | Some(serde_json::Value::Null) => {}
        Some(format) if format.get("type").and_then(|t| t.as_str()) == Some("text") => {}
        Some(_) => return refuse("response_format", "only {\"type\": \"text\"} is"),
    }
    match &request.tool_choice {
        None | Some(serde_json::Value::Null) => {}
        Some(choice) if matches!(choice.as_str(), Some("none" | "auto")) => {}
        Some(_) => return refuse("tool_choice", "only \"auto\" and \"none\" are"),
    }
    // OpenAI's `user` and `metadata` tag a request for the caller's records and change no
    // reply; anything else unknown (vLLM's `repetition_penalty`, `min_p`, a misspelt field)
    // would.
    if let Some(field) = request
        .unknown
        .keys()
        .find(|k| !matches!(k.as_str(), "user" | "metadata"))
    {
        return refuse(field, "a field this server does not know");
    }
    Ok(())
}

/// The request's sampling, checked, with the model's usual settings where it gives none.
pub fn sampling(request: &ChatRequest, config: &ServerConfig) -> Result<Sampling, ApiError> {
    let defaults = Sampling::default();
    if request.n.is_some_and(|n| n != 1) {
        return Err(ApiError::BadRequest("only n = 1 is served".into()));
    }
    refuse_unserved(request)?;
    let temperature = request.temperature.unwrap_or(defaults.temperature);
    if !(temperature.is_finite() && (0.0..=2.0).contains(&temperature)) {
        return Err(ApiError::BadRequest(format!(
            "temperature must be in [0, 2], not {temperature}"
        )));
    }
    let top_p = request.top_p.unwrap_or(defaults.top_p);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::BadRequest(format!(
            "top_p must be in (0, 1], not {top_p}"
        )));
    }
    let max_tokens = request
        .max_completion_tokens
        .or(request.max_tokens)
        .unwrap_or(config.default_max_tokens);
    if max_tokens == 0 || max_tokens > config.max_tokens_limit {
        return Err(ApiError::BadRequest(format!(
            "max_tokens must be 1 to {}, not {max_tokens}",
            config.max_tokens_limit
        )));
    }
    let top_logprobs = if request.logprobs {
        request.top_logprobs.unwrap_or(0)
    } else {
        0
    };
    if top_logprobs > 20 {
        return Err(ApiError::BadRequest(format!(
            "top_logprobs must be 0 to 20, not {top_logprobs}"
        )));
    }
    Ok(Sampling {
        temperature,
        top_p,
        // A client that sets top_p alone expects nucleus sampling alone.
        top_k: request.top_k.unwrap_or(if request.top_p.is_some() {
            0
        } else {
            defaults.top_k
        }),
        seed: request.seed.unwrap_or_else(rand::random),
        max_tokens,
        stop: Vec::new(),
        top_logprobs: top_logprobs.max(usize::from(request.logprobs)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: serde_json::Value) -> ChatRequest {
        serde_json::from_value(body).expect("request")
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::new(w, h)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("png");
        out
    }

    #[test]
    fn messages_keep_roles_images_and_tool_calls() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(png(4, 3));
        let req = request(serde_json::json!({"messages": [
            {"role": "developer", "content": "rules"},
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b64}")}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
            {"role": "tool", "content": "ok"}
        ]}));
        let (messages, sources) = messages(&req, &ServerConfig::default()).expect("converts");
        assert_eq!(
            messages.iter().map(|m| m.role).collect::<Vec<_>>(),
            [Role::System, Role::User, Role::Assistant, Role::Tool]
        );
        assert_eq!(messages[1].content[1], Part::Image);
        assert_eq!(
            messages[2].tool_calls[0].function.arguments,
            serde_json::json!({"x": 1})
        );
        let [ImageSource::Data(bytes)] = sources.as_slice() else {
            panic!("one data image");
        };
        let image = decode_image(bytes, 100).expect("decodes");
        assert_eq!((image.width(), image.height()), (4, 3));
        assert!(matches!(
            decode_image(bytes, 11),
            Err(ApiError::TooLarge(_))
        ));
    }

    #[test]
    fn remote_images_are_off_unless_allowed() {
        let req = request(
            serde_json::json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}]}]}),
        );
        let err = messages(&req, &ServerConfig::default())
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("remote image URLs are off"),
            "{err}"
        );
        let allowed = ServerConfig {
            allow_remote_images: true,
            ..ServerConfig::default()
        };
        assert!(matches!(
            messages(&req, &allowed).expect("allowed").1.as_slice(),
            [ImageSource::Remote(_)]
        ));
    }

    #[test]
    fn sampling_is_checked() {
        let config = ServerConfig::default();
        let ok = sampling(
            &request(
                serde_json::json!({"messages": [], "temperature": 0, "max_tokens": 5,
                                        "seed": 3, "logprobs": true, "top_logprobs": 2}),
            ),
            &config,
        )
        .expect("fine");
        assert_eq!(
            (ok.temperature, ok.max_tokens, ok.seed, ok.top_logprobs),
            (0.0, 5, 3, 2)
        );
        for bad in [
            serde_json::json!({"messages": [], "temperature": 3}),
            serde_json::json!({"messages": [], "top_p": 0}),
            serde_json::json!({"messages": [], "max_tokens": 100000}),
            serde_json::json!({"messages": [], "n": 2}),
            serde_json::json!({"messages": [], "logprobs": true, "top_logprobs": 21}),
        ] {
            assert!(sampling(&request(bad.clone()), &config).is_err(), "{bad}");
        }
    }

    #[test]
    fn fields_not_served_are_refused_by_name_never_ignored() {
        let config = ServerConfig::default();
        for (bad, field) in [
            (
                serde_json::json!({"presence_penalty": 0.5}),
                "presence_penalty",
            ),
            (
                serde_json::json!({"frequency_penalty": -1}),
                "frequency_penalty",
            ),
            (serde_json::json!({"logit_bias": {"42": 100}}), "logit_bias"),
            (
                serde_json::json!({"response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (
                serde_json::json!({"tool_choice": "required"}),
                "tool_choice",
            ),
        ] {
            let mut body = bad.clone();
            body["messages"] = serde_json::json!([]);
            let refused = sampling(&request(body), &config).expect_err("refused");
            assert!(refused.to_string().contains(field), "{bad}: {refused}");
        }
        for unknown in ["repetition_penalty", "min_p", "temprature"] {
            let body = serde_json::json!({"messages": [], unknown: 1});
            let refused = sampling(&request(body), &config).expect_err(unknown);
            assert!(refused.to_string().contains(unknown), "{refused}");
        }
        let tagged = serde_json::json!({"messages": [], "user": "u-1", "metadata": {"run": "7"}});
        sampling(&request(tagged), &config).expect("tags that change no reply are served");
        // Their neutral values are what a client sends by default, and are served.
        let neutral = serde_json::json!({"messages": [], "presence_penalty": 0,
            "frequency_penalty": 0.0, "logit_bias": {}, "response_format": {"type": "text"},
            "tool_choice": "auto"});
        sampling(&request(neutral), &config).expect("neutral values are served");
    }
}
