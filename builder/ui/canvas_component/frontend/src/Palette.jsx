import { useState } from "react";

export const BLOCK_MIME = "application/x-aib-block";

// The blocks, grouped by domain, with a search box: drag an entry onto the canvas, or click it.
export function Palette({ groups, onAdd }) {
  const [query, setQuery] = useState("");
  const q = query.trim().toLowerCase();
  const shown = groups
    .map((g) => ({
      ...g,
      blocks: g.blocks.filter((b) => !q || `${b.name} ${b.ref} ${b.description} ${g.label}`.toLowerCase().includes(q)),
    }))
    .filter((g) => g.blocks.length);
  return (
    <aside className="aib-palette" aria-label="Blocks">
      <input
        className="aib-search"
        type="search"
        placeholder="Search blocks"
        aria-label="Search blocks"
        value={query}
        onChange={(e) => setQuery(e.target.value)}
      />
      <p className="aib-hint">Drag a block onto the canvas, or click it.</p>
      {shown.length === 0 && <p className="aib-hint">No block matches.</p>}
      {shown.map((g) => (
        <section key={g.domain} className="aib-group">
          <h3>{g.label}</h3>
          {g.blocks.map((b) => (
            <button
              key={b.ref}
              type="button"
              className="aib-entry"
              draggable
              data-ref={b.ref}
              title={b.description}
              onDragStart={(e) => {
                e.dataTransfer.setData(BLOCK_MIME, b.ref);
                e.dataTransfer.effectAllowed = "copy";
              }}
              onClick={() => onAdd(b.ref)}
            >
              {b.name}
            </button>
          ))}
        </section>
      ))}
    </aside>
  );
}
