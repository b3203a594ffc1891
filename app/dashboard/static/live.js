// The event stream: a WebSocket that reconnects with backoff and says when it is down.

const FIRST_RETRY_MS = 500;
const LONGEST_RETRY_MS = 15000;
const PING_EVERY_MS = 20000;
const PONG_WITHIN_MS = 10000;

export class LiveStream {
  // tokenSource: async () => token string, or null when the server needs none.
  constructor({ tokenSource, onEvent, onState, onReconnect }) {
    this.tokenSource = tokenSource;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onReconnect = onReconnect;
    this.attempt = 0;
    this.everOpened = false;
    this.stopped = false;
    this.socket = null;
    this.timers = [];
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.clearTimers();
    if (this.socket) this.socket.close(1000, "signed out");
    this.socket = null;
  }

  clearTimers() {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers = [];
  }

  async connect() {
    this.onState("connecting");
    let url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/ws`;
    try {
      const token = await this.tokenSource();
      if (token) url += `?token=${encodeURIComponent(token)}`;
    } catch (failure) {
      this.retry(`no token: ${failure.text || failure.message}`);
      return;
    }
    if (this.stopped) return;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onopen = () => {
      const reconnected = this.everOpened;
      this.everOpened = true;
      this.attempt = 0;
      this.onState("connected");
      this.keepAlive(socket);
      if (reconnected) this.onReconnect();
    };
    socket.onmessage = (message) => {
      let parsed;
      try {
        parsed = JSON.parse(message.data);
      } catch {
        return;
      }
      if (parsed.type === "pong") {
        this.pongDue = null;
        return;
      }
      this.onEvent(parsed);
    };
    socket.onclose = (closing) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.clearTimers();
      if (!this.stopped) this.retry(closing.reason || `closed (${closing.code})`);
    };
  }

  keepAlive(socket) {
    const ping = () => {
      if (socket.readyState !== WebSocket.OPEN) return;
      socket.send(JSON.stringify({ type: "ping", timestamp: new Date().toISOString(), data: {} }));
      this.pongDue = Date.now() + PONG_WITHIN_MS;
      this.timers.push(setTimeout(() => {
        if (this.pongDue && Date.now() >= this.pongDue) socket.close(4000, "no pong");
      }, PONG_WITHIN_MS));
      this.timers.push(setTimeout(ping, PING_EVERY_MS));
    };
    this.timers.push(setTimeout(ping, PING_EVERY_MS));
  }

  retry(reason) {
    const delay = Math.min(LONGEST_RETRY_MS, FIRST_RETRY_MS * 2 ** this.attempt);
    const jittered = delay / 2 + Math.random() * delay / 2;
    this.attempt += 1;
    this.onState("offline", `${reason}; retrying in ${(jittered / 1000).toFixed(1)} s`);
    this.timers.push(setTimeout(() => this.connect(), jittered));
  }
}
