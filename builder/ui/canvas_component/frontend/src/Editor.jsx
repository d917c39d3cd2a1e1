import {
  Background,
  Controls,
  Handle,
  Panel,
  Position,
  ReactFlow,
  applyNodeChanges,
  useReactFlow,
} from "@xyflow/react";
import { memo, useCallback, useEffect, useMemo, useReducer, useRef, useState } from "react";

import { acknowledged, emit, forget, unacknowledged } from "./events.js";
import { BLOCK_MIME, Palette } from "./Palette.jsx";

const NODE_WIDTH = 190; // .aib-node's width in style.css
const NODE_HEIGHT = 90; // about a node's height, for finding a free spot
const GAP = 30;
const MIN_ZOOM = 0.25;
const MAX_ZOOM = 2;
const KEPT_CHANGES = new Set(["position", "dimensions"]); // selection comes from Python, deletion is off

const BlockNode = memo(function BlockNode({ data, selected }) {
  const cls = ["aib-node", data.bad && "aib-bad", selected && "aib-selected"].filter(Boolean).join(" ");
  return (
    <div className={cls} title={data.description}>
      {data.inputs.length > 0 && <Handle type="target" position={Position.Left} />}
      <div className="aib-name">{data.name}</div>
      <div className="aib-id">{data.id}</div>
      <div className="aib-ports">
        {data.inputs.map((p) => (
          <span key={`in-${p}`}>← {p}</span>
        ))}
        {data.outputs.map((p) => (
          <span key={`out-${p}`} className="aib-out">
            {p} →
          </span>
        ))}
      </div>
      {data.outputs.length > 0 && <Handle type="source" position={Position.Right} />}
    </div>
  );
});
const nodeTypes = { block: BlockNode };

// The first free spot near the middle of the visible canvas, on a grid around it.
function freeSpot(rf, pane) {
  const box = pane.getBoundingClientRect();
  const mid = rf.screenToFlowPosition({ x: box.left + box.width / 2, y: box.top + box.height / 2 });
  const used = rf.getNodes().map((n) => ({
    x: n.position.x,
    y: n.position.y,
    w: (n.measured && n.measured.width) || NODE_WIDTH,
    h: (n.measured && n.measured.height) || NODE_HEIGHT,
  }));
  const cells = [];
  for (let i = -4; i <= 4; i++) for (let j = -4; j <= 4; j++) cells.push([i, j]);
  cells.sort((a, b) => Math.hypot(...a) - Math.hypot(...b));
  for (const [i, j] of cells) {
    const x = mid.x - NODE_WIDTH / 2 + i * (NODE_WIDTH + GAP);
    const y = mid.y - NODE_HEIGHT / 2 + j * (NODE_HEIGHT + GAP);
    const clash = used.some((u) => x < u.x + u.w + GAP && u.x < x + NODE_WIDTH + GAP && y < u.y + u.h + GAP && u.y < y + NODE_HEIGHT + GAP);
    if (!clash) return { x, y };
  }
  return { x: mid.x - NODE_WIDTH / 2, y: mid.y - NODE_HEIGHT / 2 };
}

export function Editor({ args }) {
  const rf = useReactFlow();
  const pane = useRef(null);
  const latest = useRef(args); // the drawing on screen: events are about its version
  latest.current = args;
  const [nodes, setNodes] = useState([]);
  const moved = useRef({}); // node id -> {seq, x, y}: moved here, not yet taken by Python
  const [clicked, setClicked] = useState(null); // {seq, id}: chosen here, not yet taken by Python
  const [, sent] = useReducer((n) => n + 1, 0);
  // Fit the drawing into view once, when the frame opens on a pipeline; never later, or a block dropped on an
  // empty canvas would jump away from where it was dropped.
  const [fitOnOpen] = useState(() => args.nodes.length > 0);
  const taken = acknowledged(args.ack);
  const selected = clicked && clicked.seq > taken ? clicked.id : args.selected;

  useEffect(() => {
    forget(args.ack);
    for (const [id, m] of Object.entries(moved.current)) if (m.seq <= taken) delete moved.current[id];
    setNodes((before) => {
      const old = new Map(before.map((n) => [n.id, n]));
      return args.nodes.map((n) => {
        const was = old.get(n.id);
        const m = moved.current[n.id];
        // A node being dragged, or moved but not yet taken, stays where the user put it.
        const position = was && was.dragging ? was.position : m ? { x: m.x, y: m.y } : { x: n.x, y: n.y };
        return { ...was, id: n.id, type: "block", position, data: n, deletable: false };
      });
    });
  }, [args]);

  const send = useCallback((kind, data) => {
    const seq = emit(latest.current.version, kind, data);
    sent();
    return seq;
  }, []);

  const shown = useMemo(() => nodes.map((n) => (n.selected === (n.id === selected) ? n : { ...n, selected: n.id === selected })), [nodes, selected]);
  const edges = useMemo(
    () => args.edges.map((e) => ({ ...e, deletable: false, selectable: false, focusable: false })),
    [args.edges],
  );

  const onNodesChange = useCallback(
    (changes) => setNodes((nds) => applyNodeChanges(changes.filter((c) => KEPT_CHANGES.has(c.type)), nds)),
    [],
  );
  const onNodeClick = useCallback((_, node) => setClicked({ seq: send("select", { node: node.id }), id: node.id }), [send]);
  const onNodeDragStop = useCallback(
    (_, node, dragged) => {
      const all = dragged && dragged.length ? dragged : [node];
      const positions = Object.fromEntries(all.map((n) => [n.id, [n.position.x, n.position.y]]));
      const seq = send("move", { positions });
      for (const n of all) moved.current[n.id] = { seq, x: n.position.x, y: n.position.y };
    },
    [send],
  );
  // The edge is not drawn here: it appears when Python has connected the blocks and sends it back.
  const onConnect = useCallback((c) => send("connect", { source: c.source, target: c.target }), [send]);
  const add = useCallback((ref, at) => send("add", { ref, x: at.x, y: at.y }), [send]);

  const onDragOver = useCallback((e) => {
    if (!e.dataTransfer.types.includes(BLOCK_MIME)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  }, []);
  const onDrop = useCallback(
    (e) => {
      const ref = e.dataTransfer.getData(BLOCK_MIME);
      if (!ref) return;
      e.preventDefault();
      const p = rf.screenToFlowPosition({ x: e.clientX, y: e.clientY });
      add(ref, { x: p.x - NODE_WIDTH / 2, y: p.y - 20 }); // the node's title lands under the pointer
    },
    [rf, add],
  );

  // The wheel scrolls the page (preventScrolling off); React Flow zooms on Ctrl + wheel (and on a pinch,
  // which browsers report as Ctrl + wheel). Cmd + wheel on a Mac zooms too, here.
  useEffect(() => {
    const el = pane.current;
    const onWheel = (e) => {
      if (!e.metaKey || e.ctrlKey) return;
      e.preventDefault();
      const { x, y, zoom } = rf.getViewport();
      const box = el.getBoundingClientRect();
      const px = e.clientX - box.left;
      const py = e.clientY - box.top;
      const next = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, zoom * Math.pow(2, -e.deltaY / 300)));
      rf.setViewport({ x: px - ((px - x) * next) / zoom, y: py - ((py - y) * next) / zoom, zoom: next });
    };
    el.addEventListener("wheel", onWheel, { passive: false });
    return () => el.removeEventListener("wheel", onWheel);
  }, [rf]);

  return (
    <div className="aib-root" data-version={args.version} data-pending={unacknowledged(args.ack)}>
      <Palette groups={args.palette} onAdd={(ref) => add(ref, freeSpot(rf, pane.current))} />
      <div className="aib-pane" ref={pane} onDragOver={onDragOver} onDrop={onDrop}>
        <ReactFlow
          nodes={shown}
          edges={edges}
          nodeTypes={nodeTypes}
          onNodesChange={onNodesChange}
          onNodeClick={onNodeClick}
          onNodeDragStop={onNodeDragStop}
          onConnect={onConnect}
          isValidConnection={(c) => c.source !== c.target}
          connectionRadius={30}
          fitView={fitOnOpen}
          fitViewOptions={{ padding: 0.2, maxZoom: 1 }}
          minZoom={MIN_ZOOM}
          maxZoom={MAX_ZOOM}
          preventScrolling={false}
          zoomOnScroll={false}
          panOnScroll={false}
          zoomOnDoubleClick={false}
          deleteKeyCode={null}
          selectionKeyCode={null}
          multiSelectionKeyCode={null}
        >
          <Background gap={20} />
          <Controls showInteractive={false} />
          <Panel position="top-right" className="aib-tip">
            {args.nodes.length ? "Zoom: Ctrl + wheel, or the buttons" : "Drag blocks here from the list on the left"}
          </Panel>
        </ReactFlow>
      </div>
    </div>
  );
}
