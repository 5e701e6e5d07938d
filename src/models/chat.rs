//! Chat templates applied in Rust. Supported: ChatML (SmolLM2, Qwen), Gemma, and raw text
//! for base models. No Jinja engine: these are the formats the shipped models use, and
//! each is tested against its model's declared template.

/// One chat message.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Message {
            role: role.to_string(),
            content: content.into(),
        }
    }
}

/// A chat prompt format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>role\n…<|im_end|>\n`; SmolLM2 adds its default system message.
    ChatMl,
    /// `<bos><start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n`.
    Gemma,
    /// The user text as is (base models).
    Raw,
}

const SMOLLM_DEFAULT_SYSTEM: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

impl ChatTemplate {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "chatml" => Some(ChatTemplate::ChatMl),
            "gemma" => Some(ChatTemplate::Gemma),
            "raw" => Some(ChatTemplate::Raw),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ChatTemplate::ChatMl => "chatml",
            ChatTemplate::Gemma => "gemma",
            ChatTemplate::Raw => "raw",
        }
    }

    /// Guesses the template from a GGUF's `tokenizer.chat_template` and architecture.
    pub fn detect(jinja: Option<&str>, arch: &str) -> Self {
        match jinja {
            Some(t) if t.contains("<|im_start|>") => ChatTemplate::ChatMl,
            Some(t) if t.contains("<start_of_turn>") => ChatTemplate::Gemma,
            _ if arch.starts_with("gemma") => ChatTemplate::Gemma,
            _ => ChatTemplate::Raw,
        }
    }

    /// The token text that ends an assistant turn (generation stops there).
    pub fn end_of_turn(self) -> Option<&'static str> {
        match self {
            ChatTemplate::ChatMl => Some("<|im_end|>"),
            ChatTemplate::Gemma => Some("<end_of_turn>"),
            ChatTemplate::Raw => None,
        }
    }

    /// Renders messages and opens the assistant turn, ready for generation.
    /// `smollm_default_system` adds SmolLM2's default system message when none is given,
    /// as its own template does.
    pub fn render(self, messages: &[Message], smollm_default_system: bool) -> String {
        let mut s = String::new();
        match self {
            ChatTemplate::ChatMl => {
                if smollm_default_system && messages.first().is_none_or(|m| m.role != "system") {
                    s.push_str(&format!(
                        "<|im_start|>system\n{SMOLLM_DEFAULT_SYSTEM}<|im_end|>\n"
                    ));
                }
                for m in messages {
                    s.push_str(&format!(
                        "<|im_start|>{}\n{}<|im_end|>\n",
                        m.role, m.content
                    ));
                }
                s.push_str("<|im_start|>assistant\n");
            }
            ChatTemplate::Gemma => {
                s.push_str("<bos>");
                let mut system: Option<&str> = None;
                for m in messages {
                    if m.role == "system" {
                        system = Some(&m.content);
                        continue;
                    }
                    let role = if m.role == "assistant" {
                        "model"
                    } else {
                        m.role.as_str()
                    };
                    let content = match system.take() {
                        Some(sys) if role == "user" => format!("{sys}\n\n{}", m.content),
                        _ => m.content.clone(),
                    };
                    s.push_str(&format!(
                        "<start_of_turn>{role}\n{}<end_of_turn>\n",
                        content.trim()
                    ));
                }
                s.push_str("<start_of_turn>model\n");
            }
            ChatTemplate::Raw => {
                let parts: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
                s.push_str(&parts.join("\n\n"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_matches_smollm2_template() {
        let msgs = [Message::new("user", "Hi")];
        assert_eq!(
            ChatTemplate::ChatMl.render(&msgs, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let msgs = [
            Message::new("system", "Be brief."),
            Message::new("user", "Hi"),
        ];
        assert_eq!(
            ChatTemplate::ChatMl.render(&msgs, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn gemma_folds_system_into_first_user_turn() {
        let msgs = [
            Message::new("system", "Be brief."),
            Message::new("user", "Hi"),
        ];
        assert_eq!(
            ChatTemplate::Gemma.render(&msgs, false),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn detect_from_jinja() {
        assert_eq!(
            ChatTemplate::detect(Some("{{'<|im_start|>' + m}}"), "llama"),
            ChatTemplate::ChatMl
        );
        assert_eq!(ChatTemplate::detect(None, "gemma3"), ChatTemplate::Gemma);
        assert_eq!(ChatTemplate::detect(None, "llama"), ChatTemplate::Raw);
    }
}
