/**
 * Where a setting is written: the config file parsed again with `yaml`'s LineCounter,
 * so that a finding can name the line of its YAML path. The loader has already
 * accepted the file, so the document is well formed; anything unexpected just gives
 * no line.
 */
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import type { Document, Node } from 'yaml';

/** A YAML path: mapping keys and sequence indexes. */
export type YamlPath = readonly (string | number)[];

const PLAIN_KEY_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** `routes[2].plugins.limit-conn`, odd keys quoted (`nodes["127.0.0.1:7001"]`): the loader's display form. */
export function displayPath(path: YamlPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (PLAIN_KEY_RE.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

interface Found {
  /** The node at the deepest segment reached. */
  node: Node | undefined;
  /** The key node of the last mapping entry reached, if the last reached segment was a key. */
  key: Node | undefined;
  /** How many segments were found. */
  depth: number;
}

export class YamlLocator {
  readonly #text: string;
  readonly #lines = new LineCounter();
  readonly #doc: Document | undefined;

  constructor(text: string) {
    this.#text = text;
    try {
      this.#doc = parseDocument(text, { lineCounter: this.#lines, prettyErrors: false, uniqueKeys: true });
    } catch {
      this.#doc = undefined;
    }
  }

  #walk(path: YamlPath): Found {
    const doc = this.#doc;
    let node: Node | undefined = (doc?.contents ?? undefined) as Node | undefined;
    let key: Node | undefined;
    let depth = 0;
    for (const seg of path) {
      if (node && isAlias(node) && doc) node = node.resolve(doc) as Node | undefined;
      let next: Node | undefined;
      let nextKey: Node | undefined;
      if (typeof seg === 'number' && node && isSeq(node)) {
        next = node.items[seg] as Node | undefined;
      } else if (typeof seg === 'string' && node && isMap(node)) {
        for (const pair of node.items) {
          if (isScalar(pair.key) && String(pair.key.value) === seg) {
            nextKey = pair.key;
            // `key:` with no value has a null value node: the key is where it is written.
            next = (pair.value ?? pair.key) as Node;
            break;
          }
        }
      }
      if (next === undefined) break;
      node = next;
      key = nextKey;
      depth++;
    }
    if (node && isAlias(node) && doc) node = (node.resolve(doc) as Node | undefined) ?? node;
    return { node, key, depth };
  }

  /** Is every segment of the path written in the file? */
  has(path: YamlPath): boolean {
    return this.#doc !== undefined && this.#walk(path).depth === path.length;
  }

  /**
   * The 1-based line of the path: of its key when the path ends at a mapping entry,
   * of its nearest written ancestor when it is not written. Null without a document.
   */
  line(path: YamlPath): number | null {
    if (!this.#doc) return null;
    const { node, key } = this.#walk(path);
    const at = key ?? node;
    const offset = at?.range?.[0];
    if (offset === undefined) return null;
    return this.#lines.linePos(offset).line;
  }

  /** The scalar's text as written (quotes included), or undefined. Used to see `${ENV}`; never printed. */
  source(path: YamlPath): string | undefined {
    if (!this.#doc) return undefined;
    const found = this.#walk(path);
    if (found.depth !== path.length || !found.node || !isScalar(found.node) || !found.node.range) return undefined;
    return this.#text.slice(found.node.range[0], found.node.range[1]);
  }
}
