//! The input zip (`<user>/<job-id>-input.zip`): how inputs too large for one message travel
//! through the object store. Entries: `files/<name>` for each file and `stdin`.

use std::io::{Cursor, Read, Write};

use zip::{ZipArchive, ZipWriter, write::SimpleFileOptions};

use crate::{InputFile, Inputs};

const FILES_DIR: &str = "files/";
const STDIN_ENTRY: &str = "stdin";

/// Why an input zip cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum InputZipError {
    #[error("input zip is unreadable: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("input zip entry {0:?} is not UTF-8 text or is unexpected")]
    Entry(String),
    #[error("input zip holds more than {0} bytes")]
    TooLarge(u64),
    #[error("input zip: {0}")]
    Io(#[from] std::io::Error),
}

/// Packs `inputs` into a zip.
pub fn encode(inputs: &Inputs) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut add = |name: &str, content: &str| -> zip::result::ZipResult<()> {
        zip.start_file(name, options)?;
        zip.write_all(content.as_bytes())?;
        Ok(())
    };
    for file in &inputs.files {
        add(&format!("{FILES_DIR}{}", file.name), &file.content).expect("writing to memory");
    }
    add(STDIN_ENTRY, &inputs.stdin).expect("writing to memory");
    zip.finish().expect("writing to memory").into_inner()
}

/// Unpacks an input zip, reading at most `max_bytes` of content in all. File names are returned
/// as found: the caller checks them against the language like any other input.
pub fn decode(bytes: &[u8], max_bytes: u64) -> Result<Inputs, InputZipError> {
    let mut archive = ZipArchive::new(Cursor::new(bytes))?;
    let mut inputs = Inputs::default();
    let mut budget = max_bytes;
    for i in 0..archive.len() {
        let entry = archive.by_index(i)?;
        let name = entry.name().to_owned();
        let mut content = String::new();
        let read = entry
            .take(budget + 1)
            .read_to_string(&mut content)
            .map_err(|_| InputZipError::Entry(name.clone()))?;
        if read as u64 > budget {
            return Err(InputZipError::TooLarge(max_bytes));
        }
        budget -= read as u64;
        if name == STDIN_ENTRY {
            inputs.stdin = content;
        } else if let Some(file) = name.strip_prefix(FILES_DIR) {
            inputs.files.push(InputFile {
                name: file.to_owned(),
                content,
            });
        } else {
            return Err(InputZipError::Entry(name));
        }
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_round_trip_and_size_is_capped() {
        let inputs = Inputs {
            files: vec![InputFile {
                name: "main.c".into(),
                content: "int main(){}".repeat(1000),
            }],
            stdin: "42\n".into(),
        };
        let zip = encode(&inputs);
        assert_eq!(decode(&zip, 1 << 20).unwrap(), inputs);
        assert!(matches!(
            decode(&zip, 100),
            Err(InputZipError::TooLarge(100))
        ));
        assert!(decode(b"not a zip", 100).is_err());
    }
}
