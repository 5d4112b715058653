//! Validated values: each type parses its raw input once (zero2prod's `SubscriberEmail::parse`)
//! and cannot hold an invalid one afterwards, so REST and WebSocket read the same rules.

use std::fmt;

/// Most characters a message's text may have.
pub const MAX_CONTENT_CHARS: usize = 10_000;
/// Most characters a room's name may have.
pub const MAX_ROOM_NAME_CHARS: usize = 255;
/// Most bytes of UTF-8 a reaction's emoji may have (the longest family and flag sequences
/// fit).
pub const MAX_EMOJI_BYTES: usize = 32;

/// Why a raw value was refused; the message is the one the API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("Message content may not be blank")]
    BlankContent,
    #[error("Message content may have at most {MAX_CONTENT_CHARS} characters")]
    LongContent,
    #[error("The chatroom name may not be blank")]
    BlankRoomName,
    #[error("The chatroom name may have at most {MAX_ROOM_NAME_CHARS} characters")]
    LongRoomName,
    #[error("Enter a valid email address.")]
    Email,
    #[error("Enter a valid phone number.")]
    PhoneNumber,
    #[error("\"emoji\" must be exactly one emoji")]
    Emoji,
}

/// A message's text: non-blank unless a file carries the message, and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content(String);

impl Content {
    pub fn parse(raw: String, has_attachment: bool) -> Result<Self, InvalidValue> {
        if is_blank(&raw) && !has_attachment {
            return Err(InvalidValue::BlankContent);
        }
        if raw.chars().count() > MAX_CONTENT_CHARS {
            return Err(InvalidValue::LongContent);
        }
        Ok(Self(raw))
    }
}

/// A room's name, trimmed: something visible, and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomName(String);

impl RoomName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let name = raw.trim();
        if is_blank(name) {
            return Err(InvalidValue::BlankRoomName);
        }
        if name.chars().count() > MAX_ROOM_NAME_CHARS {
            return Err(InvalidValue::LongRoomName);
        }
        Ok(Self(name.to_string()))
    }
}

/// An email address, trimmed and lower-cased, that looks deliverable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let email = raw.trim().to_lowercase();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && match email.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && local.len() <= 64
                        && !domain.contains('@')
                        && domain.contains('.')
                        && domain.split('.').all(|label| {
                            !label.is_empty() && !label.starts_with('-') && !label.ends_with('-')
                        })
                }
                None => false,
            };
        valid.then_some(Self(email)).ok_or(InvalidValue::Email)
    }
}

/// A phone number in libphonenumber's INTERNATIONAL format, e.g. `+1 415-555-2671`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let parsed = phonenumber::parse(None, raw.trim()).map_err(|_| InvalidValue::PhoneNumber)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(InvalidValue::PhoneNumber);
        }
        let international = parsed.format().mode(phonenumber::Mode::International);
        Ok(Self(international.to_string()))
    }
}

/// A reaction: exactly one emoji, i.e. one grapheme cluster (so ZWJ sequences, skin tones
/// and flags count as one) with a pictographic code point in it, at most [`MAX_EMOJI_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emoji(String);

impl Emoji {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        use unicode_properties::UnicodeEmoji;
        use unicode_segmentation::UnicodeSegmentation;
        let one_grapheme = raw.graphemes(true).count() == 1;
        // Digits, '#' and '*' are Emoji=Yes too (for keycaps), so ASCII alone is not one.
        let pictographic = raw
            .chars()
            .any(|c| !c.is_ascii() && c.is_emoji_char() || c == '\u{20E3}');
        if raw.len() > MAX_EMOJI_BYTES || !one_grapheme || !pictographic {
            return Err(InvalidValue::Emoji);
        }
        Ok(Self(raw.to_string()))
    }
}

macro_rules! text_value {
    ($($name:ident),*) => {$(
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

text_value!(Content, RoomName, Email, PhoneNumber, Emoji);

/// True when `text` shows nothing: only whitespace, control characters (NUL included) and
/// invisible format characters (zero-width spaces and joiners, word joiner, BOM, bidi
/// marks, variation selectors, fillers, tags).
pub fn is_blank(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
}

fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{2800}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_control_characters_are_blank_and_visible_text_is_not() {
        for blank in [
            "",
            " \t\n",
            "\0",
            "\u{200B}\u{200C}\u{200D}",
            "\u{2060}\u{FEFF}",
            "\u{3164}",
        ] {
            assert!(is_blank(blank), "{blank:?}");
        }
        for text in ["a", "\u{200B}a", "\u{1F469}\u{200D}\u{1F4BB}", "\u{05D0}"] {
            assert!(!is_blank(text), "{text:?}");
        }
    }

    #[test]
    fn content_is_blank_only_without_a_file_and_bounded_either_way() {
        let long = "x".repeat(MAX_CONTENT_CHARS + 1);
        assert_eq!(
            Content::parse(" ".into(), false),
            Err(InvalidValue::BlankContent)
        );
        assert_eq!(Content::parse(" ".into(), true).unwrap().as_str(), " ");
        assert_eq!(
            Content::parse(long.clone(), true),
            Err(InvalidValue::LongContent)
        );
        assert_eq!(
            Content::parse(long[1..].into(), false)
                .unwrap()
                .as_str()
                .len(),
            MAX_CONTENT_CHARS
        );
    }

    #[test]
    fn room_names_are_trimmed_visible_and_bounded() {
        assert_eq!(RoomName::parse("  general ").unwrap().as_str(), "general");
        assert_eq!(
            RoomName::parse("\u{200B}"),
            Err(InvalidValue::BlankRoomName)
        );
        let long = "é".repeat(MAX_ROOM_NAME_CHARS + 1);
        assert_eq!(RoomName::parse(&long), Err(InvalidValue::LongRoomName));
        assert!(RoomName::parse(&long[2..]).is_ok());
    }

    #[test]
    fn emails_are_normalised() {
        let email = Email::parse(" Alice@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "alice@example.com");
        for bad in [
            "no-at-sign",
            "a@b",
            "a b@example.com",
            "a@-x.com",
            "a@@x.com",
        ] {
            assert_eq!(Email::parse(bad), Err(InvalidValue::Email), "{bad:?}");
        }
    }

    #[test]
    fn an_emoji_is_one_pictographic_grapheme() {
        for emoji in [
            "\u{1F44D}",
            "\u{1F44D}\u{1F3FD}",
            "\u{2764}\u{FE0F}",
            "\u{1F469}\u{200D}\u{1F4BB}",
            "\u{1F1EB}\u{1F1F7}",
            "1\u{FE0F}\u{20E3}",
        ] {
            assert_eq!(Emoji::parse(emoji).unwrap().as_str(), emoji, "{emoji:?}");
        }
        let long = format!("\u{1F44D}{}", "\u{FE0F}".repeat(10));
        for bad in [
            "",
            "a",
            "ab",
            "1",
            "#",
            " ",
            "\u{1F44D}\u{1F44D}",
            "\u{1F44D} ",
            "\u{00E9}",
            long.as_str(),
        ] {
            assert_eq!(Emoji::parse(bad), Err(InvalidValue::Emoji), "{bad:?}");
        }
    }

    #[test]
    fn phone_numbers_come_back_international() {
        let phone = PhoneNumber::parse("+14155552671").unwrap();
        assert_eq!(phone.as_str(), "+1 415-555-2671");
        assert_eq!(PhoneNumber::parse(phone.as_str()), Ok(phone));
        assert!(PhoneNumber::parse("12345").is_err());
        assert!(PhoneNumber::parse("not a phone").is_err());
    }
}
