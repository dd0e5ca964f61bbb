// containerd's filter language (containerd/filters), used by List/Walk:
//
//   selectors := selector ("," selector)*          all must match
//   selector  := fieldpath (operator value)?       no operator: field present
//   fieldpath := field ("." field)*
//   field     := quoted | [A-Za-z0-9_]+
//   operator  := "==" | "!=" | "~="
//   value     := quoted | [^\s,]+
//   quoted    := "..." | /.../ | |...|   (Go escapes)
//
// Several filter strings are ORed. Parsing errors are InvalidArgument, naming
// the offending position, because they come straight from the user's command line.
import { InvalidArgumentError } from "../errdefs/errors.js";

export type Operator = "present" | "==" | "!=" | "~=";

export interface Selector {
  fieldpath: string[];
  operator: Operator;
  value: string;
}

/** Looks a field path up on the object being filtered. */
export type Adaptor = (fieldpath: string[]) => { value: string; present: boolean };

export type Filter = (adaptor: Adaptor) => boolean;

const QUOTES = new Set(['"', "/", "|"]);
const isFieldChar = (c: string): boolean => /^[A-Za-z0-9_]$/.test(c);
const isSpace = (c: string): boolean => /^\s$/.test(c);

class Parser {
  private pos = 0;
  constructor(private readonly input: string) {}

  parse(): Selector[] {
    const selectors: Selector[] = [];
    for (;;) {
      selectors.push(this.selector());
      this.skipSpace();
      if (this.pos >= this.input.length) return selectors;
      this.expect(",");
    }
  }

  private selector(): Selector {
    const fieldpath = [this.field()];
    for (;;) {
      this.skipSpace();
      if (this.peek() !== ".") break;
      this.pos++;
      fieldpath.push(this.field());
    }
    this.skipSpace();
    const op = this.input.slice(this.pos, this.pos + 2);
    if (op === "==" || op === "!=" || op === "~=") {
      this.pos += 2;
      const value = this.value();
      if (op === "~=") compileRegExp(value, this.input);
      return { fieldpath, operator: op, value };
    }
    if (this.peek() !== undefined && "=!~".includes(this.peek() ?? "")) {
      this.fail(`unknown operator ${JSON.stringify(this.input.slice(this.pos).match(/^[=!~]+/)?.[0])}`);
    }
    return { fieldpath, operator: "present", value: "" };
  }

  private field(): string {
    this.skipSpace();
    const c = this.peek();
    if (c !== undefined && QUOTES.has(c)) return this.quoted();
    const start = this.pos;
    while (this.pos < this.input.length && isFieldChar(this.input[this.pos] ?? "")) this.pos++;
    if (start === this.pos) this.fail("expected field");
    return this.input.slice(start, this.pos);
  }

  private value(): string {
    this.skipSpace();
    const c = this.peek();
    if (c !== undefined && QUOTES.has(c)) return this.quoted();
    const start = this.pos;
    while (this.pos < this.input.length) {
      const ch = this.input[this.pos] ?? "";
      if (ch === "," || isSpace(ch)) break;
      this.pos++;
    }
    if (start === this.pos) this.fail("expected value");
    return this.input.slice(start, this.pos);
  }

  private quoted(): string {
    const quote = this.input[this.pos++];
    let out = "";
    for (;;) {
      const ch = this.input[this.pos++];
      if (ch === undefined || ch === "\n") this.fail("quoted literal not terminated");
      if (ch === quote) return out;
      if (ch !== "\\") {
        out += ch;
        continue;
      }
      out += this.escape(quote ?? '"');
    }
  }

  private escape(quote: string): string {
    const ch = this.input[this.pos++];
    const simple: Record<string, string> = { a: "\x07", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v", "\\": "\\" };
    if (ch === undefined) this.fail("illegal escape sequence");
    if (ch === quote) return quote;
    if (simple[ch] !== undefined) return simple[ch];
    const digits = (n: number, base: number): string => {
      const s = this.input.slice(this.pos, this.pos + n);
      if (s.length !== n || Number.isNaN(parseInt(s, base))) this.fail("illegal numeric escape sequence");
      this.pos += n;
      return String.fromCodePoint(parseInt(s, base));
    };
    if (/[0-7]/.test(ch)) {
      this.pos--;
      return digits(3, 8);
    }
    if (ch === "x") return digits(2, 16);
    if (ch === "u") return digits(4, 16);
    if (ch === "U") return digits(8, 16);
    return this.fail("illegal escape sequence");
  }

  private skipSpace(): void {
    while (this.pos < this.input.length && isSpace(this.input[this.pos] ?? "")) this.pos++;
  }

  private peek(): string | undefined {
    return this.input[this.pos];
  }

  private expect(c: string): void {
    if (this.input[this.pos] !== c) this.fail(`expected ${JSON.stringify(c)}`);
    this.pos++;
  }

  private fail(what: string): never {
    throw new InvalidArgumentError(`invalid filter ${JSON.stringify(this.input)}: ${what} at position ${this.pos}`);
  }
}

function compileRegExp(source: string, input: string): RegExp {
  try {
    return new RegExp(source);
  } catch (err) {
    throw new InvalidArgumentError(`invalid filter ${JSON.stringify(input)}: bad regular expression ${JSON.stringify(source)}`, { cause: err });
  }
}

/** Parses one filter string; "" matches everything. */
export function parseSelectors(input: string): Selector[] {
  if (input.trim() === "") return [];
  return new Parser(input).parse();
}

function matches(sel: Selector, adaptor: Adaptor): boolean {
  const { value, present } = adaptor(sel.fieldpath);
  switch (sel.operator) {
    case "present":
      return present;
    case "==":
      return present && value === sel.value;
    case "!=":
      return value !== sel.value;
    case "~=":
      return new RegExp(sel.value).test(value);
  }
}

/** Parses filter strings into one predicate: any filter string may match, all of its selectors must. */
export function parseFilters(inputs: string[]): Filter {
  const parsed = inputs.map(parseSelectors);
  if (parsed.length === 0) return () => true;
  return (adaptor) => parsed.some((sels) => sels.every((s) => matches(s, adaptor)));
}
