//! Chat messages rendered by the model directory's own Jinja chat template, the way HF's
//! `apply_chat_template` renders them (trim/lstrip blocks, Python string methods, Python's
//! `json.dumps` layout for `tojson`), so the token stream matches what the model was trained on.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Who speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The person's turn.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call, fed back to the model.
    Tool,
}

impl Role {
    /// The name chat APIs and templates use.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One piece of a message: text, or an image placeholder (the image itself travels beside).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Part {
    /// Plain text.
    Text {
        /// The text itself.
        text: String,
    },
    /// Where one image goes; the template turns it into the vision placeholder tokens.
    Image,
}

/// A tool call made by the assistant, in OpenAI's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The function called and its arguments.
    pub function: FunctionCall,
}

/// The function a [`ToolCall`] names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The function's name, as in the tool schema.
    pub name: String,
    /// The call's arguments, as JSON.
    pub arguments: serde_json::Value,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// Text and image placeholders, in order.
    pub content: Vec<Part>,
    /// Tool calls the message makes; only assistant messages have them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

impl Message {
    /// A message that holds only text.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: vec![Part::Text { text: text.into() }],
            tool_calls: Vec::new(),
        }
    }

    /// Image placeholders, `images` of them, then text: the shape of a screenshot prompt.
    pub fn images_then_text(role: Role, images: usize, text: impl Into<String>) -> Self {
        let mut content = vec![Part::Image; images];
        content.push(Part::Text { text: text.into() });
        Self {
            role,
            content,
            tool_calls: Vec::new(),
        }
    }

    /// The message as the template sees it: content as a string when it is pure text (as
    /// most callers of HF pass it), a list of parts otherwise.
    fn to_template_value(&self) -> serde_json::Value {
        let content = match self.content.as_slice() {
            [Part::Text { text }] => serde_json::Value::String(text.clone()),
            parts => serde_json::to_value(parts).unwrap_or(serde_json::Value::Null),
        };
        let mut value = serde_json::json!({ "role": self.role, "content": content });
        if !self.tool_calls.is_empty() {
            value["tool_calls"] = serde_json::to_value(&self.tool_calls).unwrap_or_default();
        }
        value
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
}

impl ChatTemplate {
    /// Compiles a Jinja chat template, with HF's trim/lstrip settings, Python string methods,
    /// `tojson` and `raise_exception`.
    pub fn new(source: &str) -> Result<Self> {
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| ModelError::Template(e.to_string()))?;
        Ok(Self { env })
    }

    /// Renders messages (and tool schemas) to the prompt text.
    pub fn render(
        &self,
        messages: &[Message],
        tools: &[serde_json::Value],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| ModelError::Template(e.to_string()))?;
        let messages: Vec<serde_json::Value> =
            messages.iter().map(Message::to_template_value).collect();
        let tools = if tools.is_empty() {
            minijinja::Value::from(())
        } else {
            minijinja::Value::from_serialize(tools)
        };
        template
            .render(minijinja::context! {
                messages => minijinja::Value::from_serialize(&messages),
                tools => tools,
                add_generation_prompt => add_generation_prompt,
                add_vision_id => false,
            })
            .map_err(|e| ModelError::Template(format!("{e:#}")))
    }
}

/// `tojson` as HF defines it: Python's `json.dumps(x, ensure_ascii=False)`, whose separators
/// are `", "` and `": "`.
fn tojson(value: minijinja::Value) -> std::result::Result<minijinja::Value, minijinja::Error> {
    let json: serde_json::Value = serde_json::to_value(&value).map_err(|e| {
        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
    })?;
    Ok(minijinja::Value::from_safe_string(python_json(&json)))
}

/// Serialises JSON with Python's default `json.dumps` separators.
pub fn python_json(value: &serde_json::Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    if serde::Serialize::serialize(value, &mut ser).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// The computer_use tool schema Qwen3-VL's GUI agents are prompted with, for a screen of the
/// given size (the schema lives in `prompts/tools/computer_use.json`).
pub fn computer_use_tool(width: u32, height: u32) -> Result<serde_json::Value> {
    const SCHEMA: &str = include_str!("../../../prompts/tools/computer_use.json");
    let text = SCHEMA
        .replace("{{width}}", &width.to_string())
        .replace("{{height}}", &height.to_string());
    serde_json::from_str(&text)
        .map_err(|e| ModelError::Template(format!("computer_use schema: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../assets/qwen3_vl_chat_template.jinja");

    #[test]
    fn renders_images_tools_and_generation_prompt() {
        let t = ChatTemplate::new(TEMPLATE).expect("template");
        let messages = vec![
            Message::text(Role::System, "Be brief."),
            Message::images_then_text(Role::User, 1, "Click OK"),
        ];
        let tool = computer_use_tool(1280, 800).expect("tool");
        let text = t.render(&messages, &[tool], true).expect("render");
        assert!(
            text.starts_with("<|im_start|>system\nBe brief.\n\n# Tools"),
            "{text}"
        );
        assert!(text.contains("\"name\": \"computer_use\""), "{text}");
        assert!(
            text.contains(
                "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Click OK<|im_end|>\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("<|im_start|>assistant\n"), "{text}");
    }

    #[test]
    fn python_json_layout() {
        let v = serde_json::json!({"b": [1, 2], "a": "x<y"});
        assert_eq!(python_json(&v), r#"{"b": [1, 2], "a": "x<y"}"#);
    }

    #[test]
    fn assistant_tool_calls_and_tool_results() {
        let t = ChatTemplate::new(TEMPLATE).expect("template");
        let mut assistant = Message::text(Role::Assistant, "");
        assistant.content.clear();
        assistant.tool_calls.push(ToolCall {
            function: FunctionCall {
                name: "computer_use".into(),
                arguments: serde_json::json!({"action": "left_click", "coordinate": [10, 20]}),
            },
        });
        let messages = vec![
            Message::text(Role::User, "go"),
            assistant,
            Message::images_then_text(Role::Tool, 1, ""),
        ];
        let text = t.render(&messages, &[], false).expect("render");
        assert!(
            text.contains("<tool_call>\n{\"name\": \"computer_use\", \"arguments\": {\"action\": \"left_click\", \"coordinate\": [10, 20]}}\n</tool_call><|im_end|>"),
            "{text}"
        );
        assert!(text.contains("<|im_start|>user\n<tool_response>\n<|vision_start|><|image_pad|><|vision_end|>\n</tool_response><|im_end|>"), "{text}");
    }
}
