//! XML answers read element by element: Azure's List Blobs pages (`azure`) and S3's ListParts
//! (`s3`, for servers whose answer the AWS SDK refuses). Each caller knows its own format; this
//! module only turns the document into opened and closed elements with their text.
//!
//! Read with quick-xml's event reader, not its serde deserializer, because the deserializer
//! trims the whitespace around text: a name ending in a space would lose it.

use quick_xml::events::{BytesStart, Event};

/// One step of the walk.
pub(super) enum Node<'a> {
    /// An element opened (not for an empty one, `<X/>`): its start tag, for its attributes, and
    /// its parent's local name (none for the root).
    Open {
        start: &'a BytesStart<'a>,
        parent: Option<&'a [u8]>,
    },
    /// An element closed: its local name, its parent's local name (none for the root) and its
    /// text, entities and character references resolved (empty for `<X/>`). The text may be
    /// taken.
    Close {
        name: &'a [u8],
        parent: Option<&'a [u8]>,
        text: &'a mut String,
    },
}

/// Walks `xml`, calling `visit` for every element opened and closed, in document order. An error
/// from `visit` ends the walk; a document that ends inside an element is an error, never a
/// shorter answer.
pub(super) fn walk(xml: &[u8], mut visit: impl FnMut(Node<'_>) -> Result<(), String>) -> Result<(), String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    // The open elements, outermost first.
    let mut open: Vec<Vec<u8>> = Vec::new();
    let mut text = String::new();
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|e| e.to_string())?;
        let ended = match event {
            Event::Start(e) => {
                visit(Node::Open {
                    start: &e,
                    parent: open.last().map(Vec::as_slice),
                })?;
                open.push(e.local_name().as_ref().to_vec());
                text.clear();
                None
            }
            // `<NextMarker/>` and the like: an element with no text.
            Event::Empty(e) => {
                text.clear();
                Some(e.local_name().as_ref().to_vec())
            }
            Event::End(_) => open.pop(),
            Event::Text(t) => {
                text.push_str(&t.decode().map_err(|e| e.to_string())?);
                None
            }
            Event::CData(t) => {
                text.push_str(&t.decode().map_err(|e| e.to_string())?);
                None
            }
            Event::GeneralRef(r) => {
                if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
                    text.push(c);
                } else {
                    let name = r.decode().map_err(|e| e.to_string())?;
                    let s = quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity `&{name};`"))?;
                    text.push_str(s);
                }
                None
            }
            Event::Eof => break,
            _ => None,
        };
        buf.clear();
        let Some(name) = ended else { continue };
        visit(Node::Close {
            name: &name,
            parent: open.last().map(Vec::as_slice),
            text: &mut text,
        })?;
        text.clear();
    }
    if let Some(name) = open.last() {
        return Err(format!("the page ends inside `<{}>`", String::from_utf8_lossy(name)));
    }
    Ok(())
}
