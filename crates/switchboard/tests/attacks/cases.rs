//! The vocabulary of a case: what it attacks, what it expects the server to answer, and the
//! check that compares the two.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::Servers;
use crate::conn::{Conn, Dialect, Seen, error_code};

type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + 'a>>;

/// One attack: it passes when the server answers as expected.
pub struct Case {
    pub dialect: Dialect,
    pub name: String,
    pub run: Box<dyn for<'a> Fn(&'a Servers) -> CaseFuture<'a>>,
}

pub fn case(
    dialect: Dialect,
    name: impl Into<String>,
    run: impl for<'a> Fn(&'a Servers) -> CaseFuture<'a> + 'static,
) -> Case {
    Case {
        dialect,
        name: name.into(),
        run: Box::new(run),
    }
}

/// The one answer a case expects from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// One error frame with this code (Socket.io: an `error` event with exactly this
    /// message; nt: its one error frame, which has no code, is `""`) and nothing else; the
    /// connection then answers its probe.
    Error(String),
    /// Nothing at all: no frame arrives, and the next frame is the probe's answer.
    Silent,
    /// No frame, then a close frame with this code (any reason; 1005: a close frame
    /// without a code, as Socket.io's transport sends).
    Close(u16),
    /// These frames, then a close frame with this code.
    CloseAfter(&'static [&'static str], u16),
    /// These frames, then the connection ends without a close frame.
    EndAfter(&'static [&'static str]),
}

/// [`Expect::Error`] with `code`.
pub fn error(code: impl Into<String>) -> Expect {
    Expect::Error(code.into())
}

/// What the server did after an attack.
#[derive(Debug)]
pub struct Answer {
    /// What arrived while the case waited.
    pub seen: Seen,
    /// Then, unless the connection ended: the frames that arrived before the probe's
    /// answer, or `None` when the probe was not answered.
    pub probe: Option<Vec<String>>,
}

impl Answer {
    /// Reads what arrives on `c` within `within`, then probes it.
    pub async fn of(c: &mut Conn, within: Duration) -> Self {
        let seen = c.seen(within).await;
        let probe = if seen.ended { None } else { c.probe().await };
        Self { seen, probe }
    }

    /// Reads what arrives on `c` within `within`, without a probe: for the attacks that
    /// end the connection.
    pub async fn closing(c: &mut Conn, within: Duration) -> Self {
        Self {
            seen: c.seen(within).await,
            probe: None,
        }
    }

    /// Every frame the attack got, before the probe's answer.
    fn frames(&self) -> Vec<&str> {
        let later = self.probe.iter().flatten();
        self.seen
            .texts
            .iter()
            .chain(later)
            .map(String::as_str)
            .collect()
    }
}

pub fn check(case: &str, answer: &Answer, expect: &Expect) -> Result<(), String> {
    let frames = answer.frames();
    let answered = answer.probe.is_some() && !answer.seen.ended;
    let closed = |frames: &[&str], before: &[&str], code: Option<u16>| {
        answer.seen.ended && frames == before && answer.seen.close.as_ref().map(|(c, _)| *c) == code
    };
    let ok = match expect {
        Expect::Error(code) => {
            answered && frames.len() == 1 && error_code(frames[0]).is_some_and(|c| c == *code)
        }
        Expect::Silent => answered && frames.is_empty(),
        Expect::Close(code) => closed(&frames, &[], Some(*code)),
        Expect::CloseAfter(before, code) => closed(&frames, before, Some(*code)),
        Expect::EndAfter(before) => closed(&frames, before, None),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{case}: expected {expect:?}, saw {:?} close {:?} ended {} probe answered {}",
            frames
                .iter()
                .map(|t| t.chars().take(120).collect::<String>())
                .collect::<Vec<_>>(),
            answer.seen.close,
            answer.seen.ended,
            answer.probe.is_some()
        ))
    }
}

/// Frame attacks on an established connection of `d` on the dev server, one case per
/// `(name, frame, answer)`.
pub fn frame_cases(d: Dialect, table: Vec<(&str, String, Expect)>) -> Vec<Case> {
    table
        .into_iter()
        .map(|(name, frame, expect)| {
            let label = format!("{}: {name}", d.name());
            case(d, name, move |s| {
                let (frame, expect, label) = (frame.clone(), expect.clone(), label.clone());
                Box::pin(async move {
                    let mut c = Conn::open(&s.dev, d, "").await;
                    c.text(&frame).await;
                    let answer = Answer::of(&mut c, Duration::from_millis(300)).await;
                    check(&label, &answer, &expect)
                })
            })
        })
        .collect()
}

/// Arrays nested `n` deep: `[[…]]`.
pub fn deep(n: usize) -> String {
    format!("{}{}", "[".repeat(n), "]".repeat(n))
}

/// A JSON string of `s` repeated `n` times.
pub fn string_of(s: &str, n: usize) -> String {
    format!("\"{}\"", s.repeat(n))
}
