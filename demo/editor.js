// Binds a <textarea> to a Y.Text and draws the other peers' cursors over it.
//
// Local edits: each `input` event is diffed against the previous value (common prefix and
// suffix) and applied to the Y.Text as one delete plus one insert. Remote edits: the textarea
// gets the new value and the local selection is moved through the change's delta, so text
// inserted exactly at the caret goes after it and a typist's own characters stay together.
// Remote cursors: a transparent "mirror" of the text with zero-width markers, laid exactly over
// the textarea, shows where each peer's caret is (their positions travel as Yjs relative
// positions in awareness).
import * as Y from 'yjs';

export function bindTextarea(ytext, textarea, overlay, { onSelection } = {}) {
  const doc = ytext.doc;
  let last = ytext.toString();
  let remoteCursors = []; // [{name, colour, anchor: RelativePosition, head: RelativePosition}]
  textarea.value = last;

  const rel = (index) => Y.createRelativePositionFromTypeIndex(ytext, index, index > 0 ? -1 : 0);
  // A remote position comes from another peer: one that does not resolve (malformed, or for
  // another document) is no caret, never an exception that would stop every caret drawing.
  const abs = (relPos) => {
    try {
      const a = relPos && Y.createAbsolutePositionFromRelativePosition(relPos, doc);
      return a && a.type === ytext ? a.index : null;
    } catch {
      return null;
    }
  };
  /** A relative position as Yjs writes it: `{item: {client, clock}}` or `{tname}` / `{type}`. */
  const isRelativePositionJSON = (j) => {
    if (!j || typeof j !== 'object' || Array.isArray(j)) return false;
    const id = (v) => v && typeof v === 'object' && Number.isInteger(v.client) && Number.isInteger(v.clock);
    return id(j.item) || typeof j.tname === 'string' || id(j.type);
  };
  const fromJSON = (j) => {
    if (!isRelativePositionJSON(j)) return null;
    try {
      return Y.createRelativePositionFromJSON(j);
    } catch {
      return null;
    }
  };

  function captureSelection() {
    if (onSelection) {
      onSelection({
        anchor: Y.relativePositionToJSON(rel(textarea.selectionStart)),
        head: Y.relativePositionToJSON(rel(textarea.selectionEnd)),
      });
    }
  }

  /** Moves offset `i` through a delta: past inserts before it, back over deletes before it. */
  function transform(i, delta) {
    let pos = 0;
    for (const op of delta) {
      if (op.retain) pos += op.retain;
      else if (op.insert !== undefined) {
        const n = typeof op.insert === 'string' ? op.insert.length : 1;
        if (pos < i) i += n;
        pos += n;
      } else if (op.delete) {
        if (pos < i) i -= Math.min(op.delete, i - pos);
      }
    }
    return i;
  }

  textarea.addEventListener('input', () => {
    const now = textarea.value;
    if (now === last) return;
    let start = 0;
    const max = Math.min(now.length, last.length);
    while (start < max && now[start] === last[start]) start++;
    let end = 0;
    while (end < max - start && now[now.length - 1 - end] === last[last.length - 1 - end]) end++;
    doc.transact(() => {
      const removed = last.length - start - end;
      if (removed > 0) ytext.delete(start, removed);
      const inserted = now.slice(start, now.length - end);
      if (inserted) ytext.insert(start, inserted);
    }, 'textarea');
    last = now;
    captureSelection();
    render();
  });
  for (const ev of ['keyup', 'mouseup', 'select', 'focus']) textarea.addEventListener(ev, captureSelection);
  document.addEventListener('selectionchange', () => { if (document.activeElement === textarea) captureSelection(); });
  textarea.addEventListener('scroll', () => { overlay.scrollTop = textarea.scrollTop; overlay.scrollLeft = textarea.scrollLeft; });
  new ResizeObserver(() => render()).observe(textarea);

  ytext.observe((event) => {
    if (event.transaction.origin === 'textarea') return;
    const focused = document.activeElement === textarea;
    const start = transform(textarea.selectionStart, event.delta);
    const end = transform(textarea.selectionEnd, event.delta);
    last = ytext.toString();
    const scroll = textarea.scrollTop;
    textarea.value = last;
    textarea.setSelectionRange(start, end);
    textarea.scrollTop = scroll;
    if (!focused && document.activeElement === textarea) textarea.blur();
    render();
  });

  /** Redraws the remote carets. */
  function render() {
    const text = ytext.toString();
    const marks = [];
    for (const c of remoteCursors) {
      const index = abs(c.head);
      if (index !== null) marks.push({ index: Math.min(index, text.length), c });
    }
    marks.sort((a, b) => a.index - b.index);
    overlay.textContent = '';
    let at = 0;
    for (const { index, c } of marks) {
      overlay.append(text.slice(at, index));
      const caret = document.createElement('span');
      caret.className = 'caret';
      caret.style.setProperty('--colour', c.colour);
      caret.dataset.name = c.name;
      caret.dataset.peer = c.id;
      overlay.append(caret);
      at = index;
    }
    // A trailing newline needs content after it to take up a line in the mirror.
    overlay.append(text.slice(at) + '\u200b');
    overlay.scrollTop = textarea.scrollTop;
  }

  return {
    /** Sets the remote cursors: [{id, name, colour, cursor: {anchor, head} as relative-position JSON}]. */
    setCursors(list) {
      remoteCursors = list
        .map((p) => ({ id: p.id, name: p.name, colour: p.colour, head: fromJSON(p.cursor && p.cursor.head) }))
        .filter((c) => c.head);
      render();
    },
    captureSelection,
  };
}
