// `WWW-Authenticate` challenges (RFC 7235): `Bearer realm="…",service="…",scope="…"`,
// `Basic realm="…"`, several per header.

/** One challenge; scheme lower-cased, parameter names lower-cased, values unquoted. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/;

/** Parses the challenges of one or more `WWW-Authenticate` header values; malformed parts are skipped. */
export function parseWwwAuthenticate(header: string | readonly string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  if (typeof header !== "string") return header.flatMap((h) => parseWwwAuthenticate(h));
  const challenges: Challenge[] = [];
  let rest = header;
  let current: Challenge | undefined;
  for (;;) {
    rest = rest.replace(/^[\s,]+/, "");
    const token = TOKEN.exec(rest)?.[0];
    if (token === undefined) break;
    rest = rest.slice(token.length);
    const afterSpace = rest.replace(/^\s+/, "");
    if (current && afterSpace.startsWith("=") && !afterSpace.startsWith("==")) {
      const { value, remaining } = readValue(afterSpace.slice(1).replace(/^\s+/, ""));
      current.params[token.toLowerCase()] = value;
      rest = remaining;
      continue;
    }
    current = { scheme: token.toLowerCase(), params: {} };
    challenges.push(current);
    rest = afterSpace.replace(/^[A-Za-z0-9._~+/-]+=*(?=\s*(,|$))/, ""); // token68, unused by registries
  }
  return challenges;
}

function readValue(text: string): { value: string; remaining: string } {
  if (!text.startsWith('"')) {
    const value = TOKEN.exec(text)?.[0] ?? "";
    return { value, remaining: text.slice(value.length) };
  }
  let value = "";
  for (let i = 1; i < text.length; i++) {
    const c = text[i];
    if (c === "\\" && i + 1 < text.length) value += text[++i];
    else if (c === '"') return { value, remaining: text.slice(i + 1) };
    else value += c;
  }
  return { value, remaining: "" };
}
