//! Finds where one pickle ends in a byte stream, and judges whether it is plain data,
//! before serde-pickle sees it.
//!
//! A pickle carries no length: it ends at its STOP opcode. serde-pickle decodes only
//! whole pickles, so this scanner walks the opcodes (resuming where it stopped when more
//! bytes arrive, so a large pickle is scanned once) to find that end. On the way it
//! refuses what a data-only decoder must never be handed:
//!
//! - opcodes that name a global, build an object or call something (`GLOBAL`, `REDUCE`,
//!   `BUILD`, `NEWOBJ`, ...): the classic pickle exploit, refused rather than resolved;
//! - a container reached twice through the memo, and nesting deeper than
//!   [`MAX_DEPTH`]: serde-pickle turns shared references into copies and recurses per
//!   level, so both would let a small pickle cost exponential memory or the stack;
//! - huge integers, whose decimal conversion is quadratic;
//! - a pickle that would cost more to decode than [`COST_FACTOR`] times its length
//!   (plus a little slack, [`COST_SLACK`]): serde-pickle gives every value, mark and
//!   memo entry a fixed size much larger than the opcode that makes it, clones a value
//!   each time the memo is read or written again, and gives each `MARK` a stack of its
//!   own. The scanner adds up what decoding would build before anything is built, and
//!   since it checks the sum against the bytes walked so far, its own stack and memo
//!   (smaller than what they stand for) stay within the same bound while a pickle is
//!   still arriving;
//! - sets and frozensets: serde-pickle sorts their items by an order that is not total
//!   for mixed numbers (NaN, integers past 2^53 beside floats), and Rust's sort panics
//!   on that (found by fuzzing; the lab programs send dicts, never sets).
//!
//! Only the opcode framing itself can be broken beyond repair (an unknown opcode, a
//! length over the limit); everything else refuses one pickle and the stream goes on.

use std::collections::HashMap;

/// Deepest nesting of containers accepted; the lab programs send flat dicts.
pub const MAX_DEPTH: u32 = 32;
/// Longest integer literal accepted, in bytes (a u64 needs 20 digits).
const MAX_INT_BYTES: usize = 64;
/// A pickle may cost this many times its length to decode (see [`COST_SLACK`]).
pub const COST_FACTOR: u64 = 4;
/// Bytes of pickle granted for free on top of its length when weighing its cost, so
/// that a small pickle of many small values (a request dict) is never refused.
pub const COST_SLACK: u64 = 32 * 1024;

/// What serde-pickle takes before the first opcode: a read buffer and a first stack.
const DECODER_COST: u64 = 16 * 1024;
/// What one decoded value costs beyond its text or bytes: serde-pickle's value, its
/// place in a container (a dict's keys and values are paired, then put in a map) and
/// its conversion to the value the request is read from, which exists beside it.
const VALUE_COST: u64 = 128;
/// One memo entry: serde-pickle's map entry and the scanner's own.
const MEMO_COST: u64 = 128;
/// One `MARK`: serde-pickle starts a stack of 128 values for it, which becomes the
/// items of the container built at the matching end.
const MARK_COST: u64 = 128 * 40 + 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scanned {
    /// The pickle is not complete yet.
    Incomplete,
    /// The first `len` bytes are one pickle: plain data, or refused for the reason given.
    Complete {
        len: usize,
        refused: Option<&'static str>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("byte {0:#04x} is not a pickle opcode")]
    UnknownOpcode(u8),
    #[error("pickle is over the limit of {max} bytes")]
    TooLarge { max: usize },
}

/// A value on the simulated stack.
#[derive(Debug, Clone, Copy)]
struct Item {
    /// What decoding it builds, its children included, in bytes (estimated).
    cost: u64,
    /// 0 for a scalar, else how deep the containers in it nest.
    depth: u32,
    /// serde-pickle holds it in its memo and only a reference on its stack: memoizing
    /// it again clones it.
    memoized: bool,
}

impl Item {
    /// A literal of `len` bytes, which serde-pickle reads into a buffer that grows by
    /// doubling.
    fn scalar(len: usize) -> Item {
        Item {
            cost: VALUE_COST + 2 * len as u64,
            depth: 0,
            memoized: false,
        }
    }

    fn empty_container() -> Item {
        Item {
            cost: VALUE_COST,
            depth: 1,
            memoized: false,
        }
    }

    fn is_container(self) -> bool {
        self.depth > 0
    }
}

/// What follows an opcode.
enum Arg {
    Fixed(usize),
    /// Up to and including a newline.
    Line,
    /// Two newline-terminated lines (GLOBAL, INST).
    Lines2,
    /// A little-endian length of this many bytes, then that many bytes.
    Counted(usize),
}

/// Scanning state for the pickle at the front of a buffer.
#[derive(Debug, Clone, Default)]
pub struct Scanner {
    /// Bytes of the current pickle already walked; always at an opcode boundary.
    pos: usize,
    stack: Vec<Item>,
    marks: Vec<usize>,
    memo: HashMap<u64, Item>,
    /// What decoding the pickle walked so far would build, in bytes (estimated).
    cost: u64,
    refused: Option<&'static str>,
}

impl Scanner {
    /// Walks on through `buf`, which starts with the current pickle and holds what has
    /// arrived so far. After `Complete`, the scanner is ready for the next pickle.
    pub fn scan(&mut self, buf: &[u8], max: usize) -> Result<Scanned, ScanError> {
        loop {
            let Some(&op) = buf.get(self.pos) else {
                return self.incomplete(buf, max);
            };
            let Some(arg) = arg_of(op) else {
                return Err(ScanError::UnknownOpcode(op));
            };
            let start = self.pos + 1;
            let Some((payload, next)) = take_arg(buf, start, arg, max)? else {
                return self.incomplete(buf, max);
            };
            self.pos = next;
            if op == b'.' {
                if self.refused.is_none() && self.stack.len() != 1 {
                    self.refused = Some("malformed pickle: STOP without exactly one value");
                }
                let done = Scanned::Complete {
                    len: next,
                    refused: self.refused,
                };
                *self = Scanner::default();
                return Ok(done);
            }
            if self.refused.is_some() {
                continue;
            }
            let applied = self.apply(op, &buf[payload..next]).and_then(|()| {
                let budget = COST_FACTOR * (next as u64 + COST_SLACK);
                if DECODER_COST + self.cost > budget {
                    Err(TOO_COSTLY)
                } else {
                    Ok(())
                }
            });
            if let Err(why) = applied {
                self.refuse(why);
            }
        }
    }

    /// Refuses the current pickle: from here on it is only walked to its end, so what
    /// was kept to judge it is let go at once.
    fn refuse(&mut self, why: &'static str) {
        self.refused = Some(why);
        self.stack = Vec::new();
        self.marks = Vec::new();
        self.memo = HashMap::new();
    }

    /// Bytes the scanner holds for the pickle it is in the middle of, beside the
    /// pickle's own bytes: its simulated stack, marks and memo.
    pub fn held(&self) -> usize {
        use std::mem::size_of;
        self.stack.capacity() * size_of::<Item>()
            + self.marks.capacity() * size_of::<usize>()
            // A hash table slot is its key, its value and one control byte.
            + self.memo.capacity() * (size_of::<(u64, Item)>() + 1)
    }

    fn incomplete(&self, buf: &[u8], max: usize) -> Result<Scanned, ScanError> {
        if buf.len() > max {
            return Err(ScanError::TooLarge { max });
        }
        Ok(Scanned::Incomplete)
    }

    fn push(&mut self, item: Item) {
        self.cost += item.cost;
        self.stack.push(item);
    }

    fn pop(&mut self) -> Result<Item, &'static str> {
        match self.marks.last() {
            Some(&mark) if self.stack.len() <= mark => Err(UNDERFLOW),
            _ => self.stack.pop().ok_or(UNDERFLOW),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Item>, &'static str> {
        let mark = self.marks.pop().ok_or(UNDERFLOW)?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    /// Adds children to the container on top of the stack.
    fn fill_top(&mut self, children: &[Item]) -> Result<(), &'static str> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(UNDERFLOW);
        }
        let top = self.stack.last_mut().ok_or(UNDERFLOW)?;
        if !top.is_container() {
            return Err("malformed pickle: adding items to a scalar");
        }
        top.depth = top.depth.max(container_depth(children)?);
        top.cost += adopt(children, &mut self.cost);
        Ok(())
    }

    /// Pushes the container made of `children`, which were popped off the stack.
    fn build(&mut self, children: &[Item]) -> Result<(), &'static str> {
        let mut item = Item::empty_container();
        item.depth = container_depth(children)?;
        item.cost += adopt(children, &mut self.cost);
        self.push(item);
        Ok(())
    }

    /// Pushes a copy of a value already decoded, which serde-pickle clones: through
    /// the memo it is a reference to the memo again, through `DUP` a value of its own.
    fn copy(&mut self, item: Item, memoized: bool) -> Result<(), &'static str> {
        if item.is_container() {
            return Err("shared or recursive containers are not accepted");
        }
        self.push(Item { memoized, ..item });
        Ok(())
    }

    fn memo_put(&mut self, id: u64) -> Result<(), &'static str> {
        let top = self.stack.last_mut().ok_or(UNDERFLOW)?;
        // The first time, serde-pickle moves the value into its memo; after that it
        // clones it.
        self.cost += MEMO_COST + if top.memoized { top.cost } else { 0 };
        top.memoized = true;
        let top = *top;
        self.memo.insert(id, top);
        Ok(())
    }

    fn memo_get(&mut self, id: u64) -> Result<(), &'static str> {
        let item = *self
            .memo
            .get(&id)
            .ok_or("malformed pickle: unknown memo entry")?;
        self.copy(item, true)
    }

    /// The opcode's effect on the simulated stack.
    fn apply(&mut self, op: u8, arg: &[u8]) -> Result<(), &'static str> {
        let scalar = Item::scalar;
        match op {
            0x8f..=0x91 => return Err("sets are not accepted"), // EMPTY_SET, ADDITEMS, FROZENSET
            // Literals.
            b'I' | b'L' | b'F' if arg.len() > MAX_INT_BYTES => return Err(HUGE_INT),
            0x8a | 0x8b if arg.len() > MAX_INT_BYTES + 4 => return Err(HUGE_INT),
            b'I' | b'L' | b'F' | b'J' | b'K' | b'M' | b'G' | b'N' | 0x88 | 0x89 | 0x8a | 0x8b
            | b'S' | b'V' | b'T' | b'U' | b'X' | b'B' | b'C' | 0x8c | 0x8d | 0x8e | 0x96 => {
                self.push(scalar(arg.len()))
            }
            // Empty containers.
            b'}' | b']' | b')' => self.push(Item::empty_container()),
            b'(' => {
                self.cost += MARK_COST;
                self.marks.push(self.stack.len());
            }
            b'd' | b'l' | b't' => {
                let children = self.pop_mark()?;
                self.build(&children)?;
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let children = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
                self.build(&children)?;
            }
            b'a' => {
                let child = self.pop()?;
                self.fill_top(&[child])?;
            }
            b's' => {
                let children = [self.pop()?, self.pop()?];
                self.fill_top(&children)?;
            }
            b'e' | b'u' => {
                let children = self.pop_mark()?;
                self.fill_top(&children)?;
            }
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = *self.stack.last().ok_or(UNDERFLOW)?;
                self.copy(top, false)?;
            }
            // Memo.
            b'p' => self.memo_put(parse_ascii(arg)?)?,
            b'q' => self.memo_put(u64::from(arg[0]))?,
            b'r' => self.memo_put(u64::from(le_u32(arg)))?,
            0x94 => self.memo_put(self.memo.len() as u64)?,
            b'g' => self.memo_get(parse_ascii(arg)?)?,
            b'h' => self.memo_get(u64::from(arg[0]))?,
            b'j' => self.memo_get(u64::from(le_u32(arg)))?,
            // Framing and version: no effect.
            0x80 | 0x95 => {}
            // Globals, object construction, calls, extensions, persistent ids and
            // out-of-band buffers.
            _ => return Err("names a global, class or callable"),
        }
        Ok(())
    }
}

const UNDERFLOW: &str = "malformed pickle: stack underflow";
const HUGE_INT: &str = "integer literal too large";
const TOO_COSTLY: &str =
    "it would take too much memory to decode for its size (many small or repeated values)";

/// The cost of `children` as part of a container. Those in the memo are cloned out
/// of it (serde-pickle resolves a memo reference by cloning), which adds to `total`;
/// the rest are counted in it already.
fn adopt(children: &[Item], total: &mut u64) -> u64 {
    let mut cost = 0;
    for child in children {
        if child.memoized {
            *total += child.cost;
        }
        cost += child.cost;
    }
    cost
}

fn container_depth(children: &[Item]) -> Result<u32, &'static str> {
    let depth = 1 + children.iter().map(|c| c.depth).max().unwrap_or(0);
    if depth > MAX_DEPTH {
        return Err("containers nested too deep");
    }
    Ok(depth)
}

fn le_u32(arg: &[u8]) -> u32 {
    u32::from_le_bytes([arg[0], arg[1], arg[2], arg[3]])
}

fn parse_ascii(arg: &[u8]) -> Result<u64, &'static str> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.trim_end().parse().ok())
        .ok_or("malformed pickle: bad memo index")
}

/// The argument layout of each opcode of protocols 0 to 5; `None` for unknown bytes.
fn arg_of(op: u8) -> Option<Arg> {
    Some(match op {
        b'('
        | b'.'
        | b'0'
        | b'1'
        | b'2'
        | b'N'
        | b'Q'
        | b'R'
        | b'a'
        | b'b'
        | b'd'
        | b'}'
        | b'e'
        | b'l'
        | b']'
        | b'o'
        | b's'
        | b't'
        | b')'
        | b'u'
        | 0x81
        | 0x85..=0x89
        | 0x8f..=0x94
        | 0x97
        | 0x98 => Arg::Fixed(0),
        b'K' | b'h' | b'q' | 0x80 | 0x82 => Arg::Fixed(1),
        b'M' | 0x83 => Arg::Fixed(2),
        b'J' | b'j' | b'r' | 0x84 => Arg::Fixed(4),
        b'G' | 0x95 => Arg::Fixed(8),
        b'F' | b'I' | b'L' | b'P' | b'S' | b'V' | b'g' | b'p' => Arg::Line,
        b'c' | b'i' => Arg::Lines2,
        b'U' | b'C' | 0x8a | 0x8c => Arg::Counted(1),
        b'T' | b'X' | b'B' | 0x8b => Arg::Counted(4),
        0x8d | 0x8e | 0x96 => Arg::Counted(8),
        _ => return None,
    })
}

/// Where the opcode's argument starts and where the next opcode starts, once the
/// argument has fully arrived.
fn take_arg(
    buf: &[u8],
    start: usize,
    arg: Arg,
    max: usize,
) -> Result<Option<(usize, usize)>, ScanError> {
    let line_end = |from: usize| {
        buf.get(from..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map(|at| from + at + 1)
    };
    let end = match arg {
        Arg::Fixed(n) => start + n,
        Arg::Line => match line_end(start) {
            Some(end) => end,
            None => return Ok(None),
        },
        Arg::Lines2 => match line_end(start).and_then(line_end) {
            Some(end) => end,
            None => return Ok(None),
        },
        Arg::Counted(width) => {
            let Some(bytes) = buf.get(start..start + width) else {
                return Ok(None);
            };
            let mut len = [0u8; 8];
            len[..width].copy_from_slice(bytes);
            let len = u64::from_le_bytes(len);
            if len > max as u64 {
                return Err(ScanError::TooLarge { max });
            }
            let from = start + width;
            let end = from + len as usize;
            return Ok((buf.len() >= end).then_some((from, end)));
        }
    };
    Ok((buf.len() >= end).then_some((start, end)))
}

#[cfg(test)]
mod tests;
