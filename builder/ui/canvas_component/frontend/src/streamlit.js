// The Streamlit component protocol (components v1), spoken directly over postMessage: the page sends
// "streamlit:render" with the Python arguments; we answer componentReady, setFrameHeight and setComponentValue.

function send(type, data) {
  window.parent.postMessage({ isStreamlitMessage: true, type, ...data }, "*");
}

export function onRender(handler) {
  window.addEventListener("message", (event) => {
    if (event.data && event.data.type === "streamlit:render") handler(event.data.args);
  });
}

export const ready = () => send("streamlit:componentReady", { apiVersion: 1 });
export const setFrameHeight = (height) => send("streamlit:setFrameHeight", { height });
export const setComponentValue = (value) => send("streamlit:setComponentValue", { value, dataType: "json" });
