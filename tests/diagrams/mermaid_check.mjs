// Parse Mermaid diagrams with the real parser: node mermaid_check.mjs NODE_MODULES < diagrams.json
//
// stdin is a JSON object {name: mermaid_text}; stdout gets one JSON object {name: null | error},
// where error is the first line of the parser's message plus the offending line. One process
// checks them all, so hundreds of diagrams cost one mermaid import (~1 s), not hundreds.
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

if (process.argv.length !== 3) {
  process.stderr.write('usage: node mermaid_check.mjs PATH/TO/node_modules < diagrams.json\n');
  process.exit(2);
}
const nodeModules = path.resolve(process.argv[2]);
// Resolve both packages from the given folder, not from this script's location.
const require = createRequire(path.join(nodeModules, 'noop.js'));
const load = (name) => import(pathToFileURL(require.resolve(name)).href);

// Mermaid logs through console; keep stdout for the one JSON answer.
for (const level of ['log', 'info', 'warn', 'debug', 'error']) {
  console[level] = (...args) => process.stderr.write(args.join(' ') + '\n');
}

// mermaid.parse sanitises labels with DOMPurify, which needs a window before mermaid loads.
const { JSDOM } = await load('jsdom');
const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await load('mermaid');
mermaid.initialize({ startOnLoad: false });

let input = '';
for await (const chunk of process.stdin) input += chunk;
const diagrams = JSON.parse(input);

/** The text as Mermaid's parser sees it, so that its "line N" can be looked up. */
function asParsed(text) {
  // Mirrors preprocessDiagram in mermaid 11: front matter, %%{directives}%% and %% comment
  // lines go before parsing (shifting the line numbers), then leading whitespace.
  return text
    .replace(/\r\n?/g, '\n')
    .replace(/^([^\S\n\r]*)-{3}\s*[\n\r](.*?)[\n\r]\1-{3}\s*[\n\r]+/s, '')
    .replace(/%{2}{(?:(?!}%{2}).|\r?\n)*}%{2}/g, '')
    .replace(/^\s*%%(?!{)[^\n]+\n?/gm, '')
    .trimStart()
    .trimEnd();
}

/** "Parse error on line 3: <that line of text> (unexpected 'STR')" from Mermaid's error. */
function summarise(error, text) {
  const lines = String(error?.message ?? error).split('\n');
  const parts = [lines[0].trim()];
  // The message's own second line is a 20-character window ending at the error, with newlines
  // removed; the whole source line reads better. The end of text counts as one more line.
  const line = lines[0].match(/ on line (\d+)/);
  if (line) {
    const source = asParsed(text).split('\n');
    parts.push(source[Math.min(Number(line[1]), source.length) - 1].trim());
  }
  const got = lines.find((l) => l.startsWith('Expecting '))?.match(/, got '([^']*)'$/);
  if (got) parts.push(`(unexpected ${got[1] === '1' ? 'end of text' : `'${got[1]}'`})`);
  return parts.join(' ');
}

const results = {};
for (const [name, text] of Object.entries(diagrams)) {
  try {
    await mermaid.parse(text);
    results[name] = null;
  } catch (error) {
    results[name] = summarise(error, text);
  }
}
// Exit once the answer is flushed: nothing else is left to wait for.
process.stdout.write(JSON.stringify(results) + '\n', () => process.exit(0));
