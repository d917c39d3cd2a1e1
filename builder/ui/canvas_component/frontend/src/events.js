// What the user did, sent to Python as numbered events (see builder/ui/canvas.py for the protocol).
//
// The component's value is the list of events Python has not yet acknowledged, so an event is never lost
// when a newer value replaces it before Python has read it; Python applies each sequence number once.
import { setComponentValue } from "./streamlit.js";

function randomId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes); // randomUUID needs a secure context; a plain-http host is not one
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// One per loaded frame: a reloaded frame numbers its events from 1 again under a new name.
export const INSTANCE = randomId();
let lastSeq = 0;
let pending = [];

// Send one event about the drawing of draft `version`; returns its sequence number.
export function emit(version, kind, data) {
  lastSeq += 1;
  pending.push({ seq: lastSeq, version, kind, ...data });
  setComponentValue({ instance: INSTANCE, events: pending });
  return lastSeq;
}

// The highest sequence number Python has taken from this frame (0 when it has none from it yet).
export function acknowledged(ack) {
  return ack && ack.instance === INSTANCE ? ack.seq : 0;
}

// Forget the events Python has taken.
export function forget(ack) {
  const seq = acknowledged(ack);
  pending = pending.filter((e) => e.seq > seq);
}

// How many events Python has not taken yet (0: the canvas and the page agree).
export function unacknowledged(ack) {
  const seq = acknowledged(ack);
  return pending.filter((e) => e.seq > seq).length;
}
