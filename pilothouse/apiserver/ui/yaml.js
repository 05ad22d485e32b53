// A small YAML writer for showing objects (kubectl -o yaml's layout: list items at their key's indent).

const PLAIN = /^[A-Za-z0-9_./][A-Za-z0-9_ ./\-=+@,()]*$/;
const AMBIGUOUS = /^(true|false|null|yes|no|on|off|y|n|~|[-+]?(\d[\d_]*)?\.?\d*([eE][-+]?\d+)?|0x[0-9a-fA-F]+|\.inf|\.nan)$/i;

function scalar(value, indent) {
  if (value === null || value === undefined) return "null";
  if (typeof value !== "string") return String(value);
  if (value.includes("\n")) {
    const body = value.replace(/\n$/, "").split("\n").map((line) => (line ? indent + "  " + line : "")).join("\n");
    return (value.endsWith("\n") ? "|\n" : "|-\n") + body;
  }
  if (value === "" || AMBIGUOUS.test(value) || !PLAIN.test(value) || value.endsWith(" ")) return JSON.stringify(value);
  return value;
}

const isCollection = (value) => value !== null && typeof value === "object" &&
  (Array.isArray(value) ? value.length > 0 : Object.keys(value).length > 0);

function inline(value, indent) {
  if (Array.isArray(value)) return "[]";
  if (value !== null && typeof value === "object") return "{}";
  return scalar(value, indent);
}

function emit(value, indent, out) {
  if (Array.isArray(value)) {
    for (const item of value) {
      if (isCollection(item)) {
        const nested = [];
        emit(item, indent + "  ", nested);
        out.push(indent + "- " + nested[0].slice(indent.length + 2), ...nested.slice(1));
      } else {
        out.push(`${indent}- ${inline(item, indent)}`);
      }
    }
    return;
  }
  for (const [key, item] of Object.entries(value)) {
    const name = scalar(key, indent);
    if (isCollection(item)) {
      out.push(`${indent}${name}:`);
      emit(item, Array.isArray(item) ? indent : indent + "  ", out);
    } else {
      out.push(`${indent}${name}: ${inline(item, indent)}`);
    }
  }
}

export function toYaml(value) {
  if (!isCollection(value)) return inline(value, "") + "\n";
  const out = [];
  emit(value, "", out);
  return out.join("\n") + "\n";
}
