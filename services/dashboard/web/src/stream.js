// The SSE connection: a snapshot on connect, deltas after it. EventSource retries by itself
// after a drop (the server sets `retry: 1000`) and sends the last event id it saw: the server
// then sends only the deltas missed meanwhile if it still has them (no snapshot), else a
// fresh snapshot. When the server refused it outright (401, 503) EventSource gives up, so we
// open a new one after a pause (a new EventSource starts without an id: a snapshot).

export function connect(url, { onSnapshot, onDelta, onState }) {
  let source = null;
  let timer = null;

  function open() {
    onState(source ? "reconnecting" : "connecting");
    source = new EventSource(url, { withCredentials: true });
    // Live once the stream is open: a resumed stream starts with deltas, not a snapshot.
    source.onopen = () => onState("live");
    source.addEventListener("snapshot", (e) => {
      onState("live");
      onSnapshot(JSON.parse(e.data));
    });
    source.addEventListener("delta", (e) => {
      const { k, v } = JSON.parse(e.data);
      onDelta(k, v);
    });
    source.onerror = () => {
      onState("reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        clearTimeout(timer);
        timer = setTimeout(open, 2000);
      }
    };
  }

  open();
}
