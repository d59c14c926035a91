// A small Markdown reader for model cards (headings, paragraphs, lists, quotes, tables, code), building DOM nodes
// with text only: nothing in a card can inject markup or script.
import { h } from "./dom.js";

const INLINE = /(\*\*[^*]+\*\*|`[^`]+`|!?\[[^\]]*\]\([^)\s]+\))/g;

function inline(text, figure) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) parts.push(text.slice(last, match.index));
    const token = match[0];
    if (token.startsWith("**")) parts.push(h("strong", { text: token.slice(2, -2) }));
    else if (token.startsWith("`")) parts.push(h("code", { text: token.slice(1, -1) }));
    else {
      const [, bang, label, url] = token.match(/^(!?)\[([^\]]*)\]\(([^)\s]+)\)$/);
      if (bang) parts.push((figure && figure(url, label)) || h("em", { text: `[figure: ${label || url}]` }));
      else if (/^https:\/\//.test(url)) parts.push(h("a", { href: url, rel: "noopener noreferrer", target: "_blank", text: label }));
      else parts.push(h("span", { title: url, text: label }));
    }
    last = match.index + token.length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

const cells = (line) => line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());

// figure(url, alt): a node for an image the text shows, or null for a placeholder.
export function renderMarkdown(source, figure = null) {
  const lines = source.replace(/\r\n/g, "\n").split("\n");
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i++; continue; }
    if (line.startsWith("```")) {
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      i++;
      out.push(h("pre", {}, h("code", { text: code.join("\n") })));
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      const level = Math.min(6, heading[1].length + 2); // the dialog's own title is the h2
      out.push(h(`h${level}`, {}, inline(heading[2], figure)));
      i++;
      continue;
    }
    if (line.startsWith(">")) {
      const quote = [];
      for (; i < lines.length && lines[i].startsWith(">"); i++) quote.push(lines[i].replace(/^>\s?/, ""));
      out.push(h("blockquote", {}, h("p", {}, inline(quote.join(" "), figure))));
      continue;
    }
    if (line.trim().startsWith("|") && i + 1 < lines.length && /^\s*\|?\s*:?-{3,}/.test(lines[i + 1])) {
      const head = cells(line);
      const rows = [];
      for (i += 2; i < lines.length && lines[i].trim().startsWith("|"); i++) rows.push(cells(lines[i]));
      out.push(h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, inline(c, figure))))),
        h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, inline(c, figure)))))))));
      continue;
    }
    const item = /^\s*([-*]|\d+\.)\s+/;
    if (item.test(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const items = [];
      for (; i < lines.length && (item.test(lines[i]) || (/^\s{2,}\S/.test(lines[i]) && items.length)); i++) {
        if (item.test(lines[i])) items.push(lines[i].replace(item, ""));
        else items[items.length - 1] += ` ${lines[i].trim()}`;
      }
      out.push(h(ordered ? "ol" : "ul", {}, items.map((t) => h("li", {}, inline(t, figure)))));
      continue;
    }
    const para = [];
    for (; i < lines.length && lines[i].trim() && !/^(#|>|```|\s*\|)/.test(lines[i]) && !item.test(lines[i]); i++) para.push(lines[i].trim());
    if (!para.length) { para.push(lines[i]); i++; }
    out.push(h("p", {}, inline(para.join(" "), figure)));
  }
  return out;
}
