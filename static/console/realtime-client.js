// A client of the realtime event protocol over one WebSocket. Knows nothing of audio or of the page.
//
// `credentials()` is called before every connection attempt and returns {url, token}: the token
// travels as a `switchboard-jwt.<token>` subprotocol entry next to `realtime` (browsers cannot set
// headers), and a fresh one is fetched for each attempt because tokens are short-lived.
//
// If the socket drops after it was open, the client reconnects to the same URL (the same session
// key) plus `resume=1` (resume is explicit: a plain connect starts a new session) with backoff until
// `resumeSeconds` have passed since the drop; the gateway answers `session.resumed`, then replays what
// it buffered. A close code of 4000 or more is the gateway's deliberate answer (see docs/realtime.md)
// and ends the session without retrying; so does the user's own close.
//
// Events: "state" (detail: {state, attempt, resumed, code, reason}), "event" (detail: {direction:
// "in"|"out", event, at}), where state is connecting | open | reconnecting | closed.

const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];

export class RealtimeClient extends EventTarget {
  constructor({ credentials, resumeSeconds = 120 }) {
    super();
    this.credentials = credentials;
    this.resumeSeconds = resumeSeconds;
    this.socket = null;
    this.state = "closed";
    this._closing = false;
    this._dropping = false;
    this._everOpen = false;
    this._droppedAt = null;
    this._attempt = 0;
    this._timer = null;
    this._lastError = null;
    this._counter = 0;
  }

  _setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, attempt: this._attempt, ...extra } }));
  }

  async connect() {
    this._closing = false;
    this._everOpen = false;
    this._droppedAt = null;
    this._attempt = 0;
    this._setState("connecting");
    await this._open();
  }

  async _open() {
    let credentials;
    try {
      credentials = await this.credentials();
    } catch (error) {
      // While resuming, a server that is briefly away (no HTTP status, or a 5xx) is retried too.
      const transient = this._everOpen && !(error.status >= 400 && error.status < 500);
      if (transient && !this._closing) this._onClose(1006, "token request failed");
      else if (!this._closing) this._failed(error.code || "token_failed", error.message);
      return;
    }
    if (this._closing) return;
    const url = new URL(credentials.url);
    if (this._everOpen) url.searchParams.set("resume", "1");
    const socket = new WebSocket(url.toString(), ["realtime", `switchboard-jwt.${credentials.token}`]);
    this.socket = socket;
    this._lastError = null;
    socket.onopen = () => {
      if (socket !== this.socket) return;
      const resumed = this._everOpen;
      const downSeconds = resumed ? (Date.now() - this._droppedAt) / 1000 : 0;
      this._everOpen = true;
      this._droppedAt = null;
      this._attempt = 0;
      this._setState("open", { resumed, downSeconds });
    };
    socket.onmessage = (message) => {
      if (socket !== this.socket) return;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        event = { type: "(unparsable)", data: String(message.data).slice(0, 200) };
      }
      if (event && event.type === "error") this._lastError = event.error || null;
      this.dispatchEvent(new CustomEvent("event", { detail: { direction: "in", event, at: new Date() } }));
    };
    socket.onclose = (close) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this._onClose(close.code, close.reason);
    };
  }

  _onClose(code, reason) {
    const error = this._lastError;
    if (this._closing) {
      this._setState("closed", { code, reason: "closed by you" });
      return;
    }
    const dropped = this._dropping;
    this._dropping = false;
    const deliberate = !dropped && (code === 1000 || code >= 4000);
    if (!this._everOpen || deliberate) {
      this._failed(error?.code || (this._everOpen ? "closed" : "connect_failed"), error?.message || reason, code);
      return;
    }
    // A network drop: resume the same session while the gateway still holds it.
    if (this._droppedAt === null) this._droppedAt = Date.now();
    if (Date.now() - this._droppedAt > this.resumeSeconds * 1000) {
      this._failed("resume_window_passed", "The connection could not be restored within the resume window.", code);
      return;
    }
    const delay = BACKOFF_MS[Math.min(this._attempt, BACKOFF_MS.length - 1)];
    this._attempt += 1;
    this._setState("reconnecting", { code, delayMs: delay });
    this._timer = setTimeout(() => { this._timer = null; this._open(); }, delay);
  }

  _failed(code, message, closeCode) {
    this._setState("closed", { code: closeCode, reason: code, message: message || "" });
  }

  get open() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  /** Send one client event (an event_id is added when missing). False if the socket is not open. */
  send(event) {
    if (!this.open) return false;
    const outgoing = event.event_id ? event : { event_id: `evt_console_${Date.now().toString(36)}_${++this._counter}`, ...event };
    this.socket.send(JSON.stringify(outgoing));
    this.dispatchEvent(new CustomEvent("event", { detail: { direction: "out", event: outgoing, at: new Date() } }));
    return true;
  }

  /** Drop the connection the way a network failure would: not a normal close, so the gateway keeps
   * the session and this client resumes it (for trying resume on purpose). */
  drop() {
    if (!this.socket) return;
    this._dropping = true;
    this.socket.close(3000, "dropped by the client");
  }

  /** End the session (a normal close: the gateway does not keep it for resume). */
  close() {
    this._closing = true;
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    if (this.socket) {
      this.socket.close(1000, "client closed");
    } else {
      this._setState("closed", { reason: "closed by you" });
    }
  }
}
