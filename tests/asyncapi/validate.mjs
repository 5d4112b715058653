// Checks chatnode's AsyncAPI document with the official parser, then (given a file of
// deliveries, one JSON object a line, as tests/it/asyncapi.rs writes them) checks every
// delivery against it: its kind is a documented message, its body validates against that
// message's payload schema, its headers against the headers schema, its routing key is the
// channel's address for the body's room, and its AMQP properties are the publishing
// operation's bindings. Every documented message must have been seen at least once.
//
//   node validate.mjs <asyncapi.json> [<deliveries.jsonl>]
//
// A delivery line: {"routing_key", "content_type", "delivery_mode", "expiration",
// "timestamp", "headers", "body"} (body: the message body as a UTF-8 string; absent
// properties are null). Exits 1 with every problem on stderr.

import { readFile } from 'node:fs/promises';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';

const [documentPath, deliveriesPath] = process.argv.slice(2);
if (!documentPath) {
  console.error('usage: node validate.mjs <asyncapi.json> [<deliveries.jsonl>]');
  process.exit(2);
}

const problems = [];
const problem = (text) => problems.push(text);

const parsed = await new Parser().parse(await readFile(documentPath, 'utf8'));
for (const d of parsed.diagnostics) {
  const where = d.path.join('.');
  const line = `${DiagnosticSeverity[d.severity]} ${d.code} at ${where || '(root)'}: ${d.message}`;
  if (d.severity === DiagnosticSeverity.Error) problem(line);
  else console.error(`note: ${line}`);
}
const document = parsed.document;
if (!document) finish();

// The parser marks every schema with x-parser-* keys; the AsyncAPI Schema keywords beyond
// draft 07 (discriminator, externalDocs) describe, not constrain.
const ajv = new Ajv({ strict: true, allErrors: true });
addFormats(ajv);
for (const keyword of ['discriminator', 'externalDocs']) {
  if (!ajv.getKeyword(keyword)) ajv.addKeyword(keyword);
}
const withoutExtensions = (value) => {
  if (Array.isArray(value)) return value.map(withoutExtensions);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([key]) => !key.startsWith('x-parser-'))
      .map(([key, v]) => [key, withoutExtensions(v)]),
  );
};
const compile = (schema) => ajv.compile(withoutExtensions(schema ? schema.json() : {}));
const explain = (validate) =>
  validate.errors
    .map((e) => {
      const named = e.params.additionalProperty ?? e.params.missingProperty;
      return `${e.instancePath || '/'} ${e.message}${named ? ` (${named})` : ''}`;
    })
    .join('; ');

// Each documented kind: its message, schemas, channel and publishing operation. (The
// parser links operations to their messages, not messages back to operations.)
const kinds = new Map();
for (const operation of document.operations().filterBySend()) {
  const channels = operation.channels().all();
  if (channels.length !== 1) {
    problem(`operation ${operation.id()} is on ${channels.length} channels, not one`);
    continue;
  }
  const binding = operation.bindings().get('amqp');
  for (const message of operation.messages()) {
    const name = message.name();
    if (!name) {
      problem(`message ${message.id()} has no name (the body's kind it describes)`);
    } else if (kinds.has(name)) {
      problem(`message ${name} is published by ${kinds.get(name).operation} and ${operation.id()}`);
    } else {
      kinds.set(name, {
        message,
        payload: compile(message.payload()),
        headers: compile(message.headers()),
        contentType: message.contentType() ?? document.defaultContentType(),
        channel: channels[0],
        operation: operation.id(),
        publish: binding ? binding.value() : {},
        seen: 0,
      });
    }
  }
}
for (const message of document.messages()) {
  if (!kinds.has(message.name())) problem(`message ${message.id()} is in no send operation`);
}
if (kinds.size === 0) problem('the document has no messages');

// A documented example that fails its own schema would mislead every reader.
for (const [name, kind] of kinds) {
  for (const example of kind.message.examples()) {
    if (example.hasPayload() && !kind.payload(example.payload())) {
      problem(`message ${name}: example payload: ${explain(kind.payload)}`);
    }
    if (example.hasHeaders() && !kind.headers(example.headers())) {
      problem(`message ${name}: example headers: ${explain(kind.headers)}`);
    }
  }
}

/** The channel's address for this body: `{param}` replaced from the parameter's location. */
function addressFor(channel, body) {
  let address = channel.address();
  for (const parameter of channel.parameters()) {
    const location = parameter.location() ?? '';
    const pointer = location.match(/^\$message\.payload#\/(.*)$/);
    if (!pointer) return null;
    const value = pointer[1].split('/').reduce((v, key) => (v == null ? v : v[key]), body);
    address = address.replaceAll(`{${parameter.id()}}`, String(value));
  }
  return address;
}

function checkDelivery(delivery, at) {
  let body;
  try {
    body = JSON.parse(delivery.body);
  } catch (e) {
    return problem(`${at}: the body is not JSON (${e.message}): ${delivery.body}`);
  }
  const kind = kinds.get(body?.kind);
  if (!kind) {
    return problem(
      `${at}: the node published kind ${JSON.stringify(body?.kind)}, which the document does ` +
        `not describe: add a message named ${JSON.stringify(body?.kind)} (with its payload ` +
        `schema) to docs/asyncapi.json. Body: ${delivery.body}`,
    );
  }
  kind.seen += 1;
  const name = body.kind;
  if (!kind.payload(body)) problem(`${at}: ${name} body: ${explain(kind.payload)}: ${delivery.body}`);
  if (!kind.headers(delivery.headers ?? {})) {
    problem(`${at}: ${name} headers: ${explain(kind.headers)}: ${JSON.stringify(delivery.headers)}`);
  }
  const expectedKey = addressFor(kind.channel, body);
  if (delivery.routing_key !== expectedKey) {
    problem(`${at}: ${name} routed with ${delivery.routing_key}, the document says ${expectedKey}`);
  }
  if (delivery.content_type !== kind.contentType) {
    problem(`${at}: ${name} content type ${delivery.content_type}, documented ${kind.contentType}`);
  }
  const publish = kind.publish;
  // AMQP 0-9-1: no delivery mode is transient (1).
  const mode = delivery.delivery_mode ?? 1;
  if ((publish.deliveryMode ?? 1) !== mode) {
    problem(`${at}: ${name} delivery mode ${mode}, ${kind.operation} says ${publish.deliveryMode ?? 'none'}`);
  }
  const expiration = delivery.expiration == null ? null : Number(delivery.expiration);
  if ((publish.expiration ?? null) !== expiration) {
    problem(`${at}: ${name} expiration ${delivery.expiration}, ${kind.operation} says ${publish.expiration ?? 'none'}`);
  }
  if (Boolean(publish.timestamp) !== (delivery.timestamp != null)) {
    problem(`${at}: ${name} timestamp ${delivery.timestamp}, ${kind.operation} says ${publish.timestamp ?? 'none'}`);
  }
}

if (deliveriesPath) {
  const lines = (await readFile(deliveriesPath, 'utf8')).split('\n').filter((l) => l.trim());
  if (lines.length === 0) problem(`${deliveriesPath} holds no deliveries`);
  lines.forEach((line, i) => checkDelivery(JSON.parse(line), `delivery ${i + 1}`));
  for (const [name, kind] of kinds) {
    if (kind.seen === 0) problem(`no delivery of the documented kind ${name} was checked`);
  }
  const counts = [...kinds].map(([name, kind]) => `${name} ${kind.seen}`).join(', ');
  console.log(`checked ${lines.length} deliveries: ${counts}`);
}
finish();

function finish() {
  if (problems.length > 0) {
    for (const p of problems) console.error(p);
    console.error(`${problems.length} problem(s) with ${documentPath}`);
    process.exit(1);
  }
  console.log(`${documentPath}: a valid AsyncAPI ${document.version()} document`);
  process.exit(0);
}
