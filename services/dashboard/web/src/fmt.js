// Display helpers. Figures arrive as exact decimal strings; these only shorten them for the
// eye (the exact string stays in the element's title).

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export function price(text) {
  if (text === null || text === undefined) return "—";
  const n = Number(text);
  const digits = Math.abs(n) >= 1000 ? 2 : Math.abs(n) >= 1 ? 2 : 6;
  return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function signed(text, suffix = "") {
  if (text === null || text === undefined) return "—";
  const n = Number(text);
  return (n > 0 ? "+" : "") + n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) + suffix;
}

export function money(text) {
  if (text === null || text === undefined) return "—";
  // already rounded to cents by the server: group the digits, keep the exact cents
  const [whole, cents = "00"] = String(text).split(".");
  const negative = whole.startsWith("-");
  const digits = negative ? whole.slice(1) : whole;
  return (negative ? "-" : "") + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + "." + cents;
}

export function time(iso) {
  if (!iso) return "—";
  const d = typeof iso === "number" ? new Date(iso * 1000) : new Date(iso);
  return d.toISOString().slice(11, 19) + "Z";
}

export function trend(text) {
  if (text === null || text === undefined) return "flat";
  const n = Number(text);
  return n > 0 ? "up" : n < 0 ? "down" : "flat";
}
