import { createRoot } from "react-dom/client";
import { ReactFlowProvider } from "@xyflow/react";
import { useEffect, useState } from "react";

import { Editor } from "./Editor.jsx";
import { onRender, ready, setFrameHeight } from "./streamlit.js";
import "@xyflow/react/dist/style.css";
import "./style.css";

function App() {
  const [args, setArgs] = useState(null);
  useEffect(() => {
    onRender(setArgs);
    ready();
  }, []);
  useEffect(() => {
    if (args) setFrameHeight(args.height);
  }, [args && args.height]);
  if (!args) return null;
  return (
    <ReactFlowProvider>
      <Editor args={args} />
    </ReactFlowProvider>
  );
}

createRoot(document.getElementById("root")).render(<App />);
