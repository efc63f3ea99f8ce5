//! The bytes of a cached item: immutable text shared by reference count, like `Arc<str>`, but
//! allocated from the system allocator (glibc's `malloc`) whatever the process's global
//! allocator is.
//!
//! Why not `Arc<str>`: the node's global allocator is mimalloc (faster on the write path, where
//! points are allocated on one thread and freed on another), and mimalloc, like jemalloc, rounds
//! an allocation up to its size class: a 1 KB item (1,040 bytes with the counts) takes a
//! 1,280-byte block, about 230 bytes more per item than glibc's 16-byte granularity, which
//! would take the cache over its memory target of 1.5 KB per 1 KB item (issue 6). An `Arc` with
//! a chosen allocator is not stable Rust yet (`allocator_api`), so this type does the little an
//! `Arc<str>` does here by hand: one allocation holding the count, the length and the bytes.
//!
//! It also records, once when made, whether the text can stand in a JSON string as it is (no
//! `"`, `\\` or control character): `get_data` then writes the answer with one copy instead of
//! escaping it byte by byte on every read (the largest user-space cost of a 1 KB hit).
//!
//! Guarantees: the text is valid UTF-8 (built only from `&str`); the allocation is freed exactly
//! once, by the last clone dropped (the count is decremented with release ordering and the
//! freeing thread synchronises with an acquire fence, as `std::sync::Arc` does).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicUsize, Ordering};

/// The head of the allocation; the bytes follow it.
#[repr(C)]
struct Head {
    references: AtomicUsize,
    /// The text's length, with [`JSON_PLAIN`] set when it needs no JSON escape.
    len_and_plain: usize,
}

/// The bit of `Head::len_and_plain` that marks text needing no JSON escape (lengths of text in
/// memory are below `isize::MAX`, so the top bit is free).
const JSON_PLAIN: usize = 1 << (usize::BITS - 1);

/// Whether `text` stands in a JSON string as it is: what serde_json (and RFC 8259) escapes is
/// `"`, `\` and the control characters below U+0020, nothing else.
fn json_plain(text: &str) -> bool {
    // Chunks tested whole, without a branch per byte, so that the compiler vectorises the test
    // (a byte-at-a-time `all` took as long as copying the item).
    text.as_bytes().chunks(64).all(|chunk| {
        chunk.iter().fold(true, |plain, &byte| {
            plain & (byte >= 0x20) & (byte != b'"') & (byte != b'\\')
        })
    })
}

/// Shared, immutable item text in one system-allocated block.
pub struct ItemData {
    head: NonNull<Head>,
}

// SAFETY: the text is immutable and the count atomic, as for `Arc<str>`.
unsafe impl Send for ItemData {}
// SAFETY: as above: shared access only reads the text or updates the atomic count.
unsafe impl Sync for ItemData {}

impl ItemData {
    fn layout(len: usize) -> Layout {
        Layout::from_size_align(
            std::mem::size_of::<Head>() + len,
            std::mem::align_of::<Head>(),
        )
        .expect("an item's size fits in isize (it came from a body in memory)")
    }

    /// A copy of `text`.
    pub fn new(text: &str) -> ItemData {
        let layout = ItemData::layout(text.len());
        // SAFETY: the layout is never zero-sized (it holds the head).
        let block = unsafe { System.alloc(layout) };
        let Some(head) = NonNull::new(block.cast::<Head>()) else {
            std::alloc::handle_alloc_error(layout);
        };
        // SAFETY: the block is fresh, aligned for `Head` and large enough for the head and
        // `text.len()` bytes after it.
        unsafe {
            let plain = if json_plain(text) { JSON_PLAIN } else { 0 };
            head.as_ptr().write(Head {
                references: AtomicUsize::new(1),
                len_and_plain: text.len() | plain,
            });
            std::ptr::copy_nonoverlapping(
                text.as_ptr(),
                block.add(std::mem::size_of::<Head>()),
                text.len(),
            );
        }
        ItemData { head }
    }

    fn head(&self) -> &Head {
        // SAFETY: the block lives while any clone does, and this is one.
        unsafe { self.head.as_ref() }
    }

    fn byte_len(&self) -> usize {
        self.head().len_and_plain & !JSON_PLAIN
    }

    /// Whether the text stands in a JSON string as it is, with no escape.
    pub fn is_json_plain(&self) -> bool {
        self.head().len_and_plain & JSON_PLAIN != 0
    }
}

impl std::ops::Deref for ItemData {
    type Target = str;

    fn deref(&self) -> &str {
        let len = self.byte_len();
        // SAFETY: `len` bytes copied from a `&str` follow the head, and are never written again.
        unsafe {
            let bytes = self
                .head
                .as_ptr()
                .cast::<u8>()
                .add(std::mem::size_of::<Head>());
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(bytes, len))
        }
    }
}

impl Clone for ItemData {
    fn clone(&self) -> ItemData {
        // Relaxed as in `Arc::clone`: a new reference is made from an existing one, which keeps
        // the block alive meanwhile. Counts cannot realistically overflow (each clone is held
        // by a waiter or a table entry, far fewer than `usize::MAX`).
        self.head().references.fetch_add(1, Ordering::Relaxed);
        ItemData { head: self.head }
    }
}

impl Drop for ItemData {
    fn drop(&mut self) {
        if self.head().references.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        let layout = ItemData::layout(self.byte_len());
        // SAFETY: this was the last reference; the block came from `System.alloc(layout)`.
        unsafe { System.dealloc(self.head.as_ptr().cast::<u8>(), layout) };
    }
}

impl From<&str> for ItemData {
    fn from(text: &str) -> ItemData {
        ItemData::new(text)
    }
}

impl fmt::Debug for ItemData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl PartialEq for ItemData {
    fn eq(&self, other: &ItemData) -> bool {
        **self == **other
    }
}

impl Eq for ItemData {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_text_across_threads() {
        let text = "é".repeat(600);
        let first = ItemData::new(&text);
        let clones: Vec<ItemData> = (0..8).map(|_| first.clone()).collect();
        drop(first);
        let threads: Vec<_> = clones
            .into_iter()
            .map(|clone| std::thread::spawn(move || clone.len()))
            .collect();
        for thread in threads {
            assert_eq!(thread.join().unwrap(), text.len());
        }
        assert_eq!(&*ItemData::from(""), "");
        assert_eq!(ItemData::from("abc"), ItemData::new("abc"));
    }

    #[test]
    fn text_needing_no_json_escape_is_marked_so() {
        for plain in ["", "abc é ☃ \u{7f} {} ' /", &"x".repeat(5000)] {
            let data = ItemData::new(plain);
            assert!(data.is_json_plain(), "{plain:?}");
            assert_eq!(&*data, plain);
            // What serde_json writes is the text between quotes.
            assert_eq!(
                serde_json::to_string(plain).unwrap(),
                format!("\"{plain}\"")
            );
        }
        for escaped in ["\"", "a\\b", "line\n", "\u{1f}", "tab\t"] {
            let data = ItemData::new(escaped);
            assert!(!data.is_json_plain(), "{escaped:?}");
            assert_eq!(&*data, escaped);
        }
    }
}
