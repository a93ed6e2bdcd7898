// The dialogue as chat bubbles: the user's live partial transcript turning into its final text,
// the agent's reply streaming in, and where a reply was cut off by a barge-in. DOM only; the
// app decides what happened, this decides how it looks.

/**
 * Split a reply's text into the part the user heard and the rest. The server's heard text is whole
 * words of the reply from its start; when it does not match (text still streaming in, say), the
 * heard text is trusted and nothing is marked unheard.
 */
export function splitHeard(text, heardText) {
  const heard = heardText.trim();
  if (!heard) return ["", text];
  const at = text.indexOf(heard);
  if (at < 0) return [heard, ""];
  const end = at + heard.length;
  return [text.slice(0, end), text.slice(end)];
}

export class ConversationView {
  /** @param {HTMLElement} list an element with role="log" */
  constructor(list, emptyHint) {
    this.list = list;
    this.emptyHint = emptyHint;
    this.userBubbles = new Map(); // utterance -> bubble
    this.agentBubbles = new Map(); // turn -> bubble
  }

  clear() {
    this.list.replaceChildren();
    this.userBubbles.clear();
    this.agentBubbles.clear();
    if (this.emptyHint) this.emptyHint.hidden = false;
  }

  bubble(who, label) {
    if (this.emptyHint) this.emptyHint.hidden = true;
    const item = document.createElement("li");
    item.className = `bubble ${who}`;
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = label;
    const text = document.createElement("p");
    text.className = "text";
    item.append(name, text);
    this.list.append(item);
    this.scroll();
    return item;
  }

  scroll() {
    this.list.scrollTop = this.list.scrollHeight;
  }

  userBubble(utterance) {
    let item = this.userBubbles.get(utterance);
    if (!item) {
      item = this.bubble("user", "You");
      this.userBubbles.set(utterance, item);
    }
    return item;
  }

  /** Live hypothesis: the stable prefix normal, the rest dimmed (it may still change). */
  partial(utterance, text, stableText = "") {
    const item = this.userBubble(utterance);
    item.classList.add("live");
    const p = item.querySelector(".text");
    const stable = text.startsWith(stableText) ? stableText : "";
    const rest = document.createElement("span");
    rest.className = "unstable";
    rest.textContent = text.slice(stable.length);
    p.replaceChildren(stable, rest);
    this.scroll();
  }

  final(utterance, text) {
    const item = this.userBubble(utterance);
    item.classList.remove("live");
    if (!text.trim()) {
      item.remove(); // noise the VAD took for speech: nothing to show
      return;
    }
    item.querySelector(".text").textContent = text;
    this.scroll();
  }

  /** Utterance `into` continues `from` (the user went on after a pause): one bubble, `into`'s. */
  merge(from, into) {
    const earlier = this.userBubbles.get(from);
    if (!earlier) return;
    this.userBubbles.delete(from);
    if (this.userBubbles.has(into)) earlier.remove();
    else this.userBubbles.set(into, earlier);
  }

  typed(text) {
    this.bubble("user", "You (typed)").querySelector(".text").textContent = text;
  }

  agentBubble(turn) {
    let item = this.agentBubbles.get(turn);
    if (!item) {
      item = this.bubble("agent", "Agent");
      this.agentBubbles.set(turn, item);
    }
    return item;
  }

  /** `final` false: a delta to append; true: the whole reply text. */
  agentText(turn, text, final) {
    const item = this.agentBubble(turn);
    const p = item.querySelector(".text");
    p.textContent = final ? text : p.textContent + text;
    item.classList.toggle("live", !final);
    this.scroll();
  }

  /** `heardText`: the part the user heard (the server keeps only that); the rest is shown struck out. */
  interrupted(turn, playedMs, heardText = null) {
    const item = this.agentBubbles.get(turn);
    if (!item) return;
    item.classList.add("cut");
    item.classList.remove("live");
    if (heardText !== null) {
      const p = item.querySelector(".text");
      const [heard, unheard] = splitHeard(p.textContent, heardText);
      const rest = document.createElement("span");
      rest.className = "unheard";
      rest.textContent = unheard;
      rest.title = "generated, never played";
      p.replaceChildren(heard, rest);
    }
    const note = document.createElement("span");
    note.className = "note";
    note.textContent = `interrupted after ${(playedMs / 1000).toFixed(1)} s`;
    item.append(note);
  }
}
