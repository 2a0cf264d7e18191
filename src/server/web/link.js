// The connection of switchboard's browser client: one WebSocket speaking the native
// protocol (one JSON object per message), requests numbered and replies matched by `id`.

/** An error the server answered, with its protocol code. */
export class ServerError extends Error {
  constructor(body) {
    super(body.message);
    this.code = body.code;
  }
}

const lost = () => new ServerError({ code: 'closed', message: 'the connection was lost' });

/** One WebSocket: requests are numbered and their replies matched by `id`. */
export class Link {
  constructor(onEvent, onClose) {
    this.onEvent = onEvent;
    this.onClose = onClose;
    this.pending = new Map();
    this.nextId = 1;
    this.socket = null;
  }

  /** Resolves with the server's `welcome` event; rejects when no connection is made. */
  open(url) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      let welcomed = false;
      this.socket = socket;
      socket.onmessage = (message) => {
        let frame;
        try {
          frame = JSON.parse(message.data);
        } catch {
          return;
        }
        if (frame.event === 'welcome' && !welcomed) {
          welcomed = true;
          resolve(frame);
        } else if (frame.event) {
          this.onEvent(frame);
        } else {
          this.answer(frame);
        }
      };
      socket.onclose = () => {
        for (const waiting of this.pending.values()) waiting.reject(lost());
        this.pending.clear();
        if (welcomed) this.onClose(this);
        else reject(lost());
      };
    });
  }

  answer(frame) {
    const waiting = this.pending.get(frame.id);
    if (!waiting) return;
    this.pending.delete(frame.id);
    if (frame.ok) waiting.resolve(frame);
    else waiting.reject(new ServerError(frame.error));
  }

  request(op, args = {}) {
    return new Promise((resolve, reject) => {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) {
        reject(lost());
        return;
      }
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify({ id, op, ...args }));
    });
  }

  close() {
    this.onClose = () => {};
    if (this.socket) this.socket.close();
  }
}
