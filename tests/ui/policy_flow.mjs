// Browser test of the management UI (the operator's story, DESIGN.md §1 step 3-4): log in,
// add an HA policy through Admin → Policies with the quick-insert links, declare a matching
// queue through the HTTP API, and check that the Queues page shows the policy on that
// queue's row. Saves a screenshot of the Queues page and prints its path.
//
// Usage: node policy_flow.mjs <management base URL> <screenshot path>
// Drives Debian's chromium (CHROMIUM overrides /usr/bin/chromium) with playwright-core.

import { chromium } from 'playwright-core';

const [base, shot] = process.argv.slice(2);
if (!base || !shot) {
  console.error('usage: node policy_flow.mjs <http://127.0.0.1:PORT> <screenshot.png>');
  process.exit(64);
}
const auth = 'Basic ' + Buffer.from('guest:guest').toString('base64');
const POLICY = 'ha-two';
const QUEUE = 'mirror_hello';

async function api(method, path, body) {
  const r = await fetch(`${base}/api${path}`, {
    method,
    headers: { Authorization: auth, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run'],
});
let failed = false;
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
page.on('pageerror', (e) => { failed = true; console.error(`page error: ${e.message}`); });
try {
  // Wrong password first: the form says so and the app stays hidden.
  await page.goto(base + '/');
  await page.fill('#login-username', 'guest');
  await page.fill('#login-password', 'wrong');
  await page.click('#login-submit');
  await page.waitForFunction(() => document.querySelector('#login-error').textContent.includes('Login failed'));
  check(await page.isHidden('#app'), 'a wrong password is refused');

  await page.fill('#login-password', 'guest');
  await page.click('#login-submit');
  await page.waitForSelector('#app:not(.hidden)');
  await page.waitForSelector('#nodes table');
  check((await page.textContent('#nodes')).includes('@'), 'the Overview lists the node');

  // Admin → Policies: the add/update form with the HA quick-insert keys.
  await page.click('#tabs a[data-tab="admin"]');
  await page.waitForSelector('#policy-form');
  await page.fill('#policy-name', POLICY);
  await page.fill('#policy-pattern', '^mirror');
  await page.selectOption('#policy-apply-to', 'queues');
  for (const [key, value] of [['ha-mode', 'exactly'], ['ha-params', '2'], ['ha-sync-mode', 'automatic']]) {
    // The link fills the first empty row (or adds one) with the key and its value type.
    await page.click(`.quick a[data-key="${key}"]`);
    const idx = await page.evaluate((k) => [...document.querySelectorAll('#def-rows .def-key')]
      .findIndex((i) => i.value === k), key);
    check(idx >= 0, `quick-insert put ${key} in the form`);
    await page.locator('#def-rows .def-value').nth(idx).fill(value);
  }
  await page.click('#policy-submit');
  await page.waitForFunction((name) => document.querySelector('#policies').textContent.includes(name), POLICY);
  const policy = await api('GET', `/policies/%2F/${POLICY}`);
  check(JSON.stringify(policy.definition) === JSON.stringify({ 'ha-mode': 'exactly', 'ha-params': 2, 'ha-sync-mode': 'automatic' }),
    `the policy was stored as ${JSON.stringify(policy.definition)}`);

  // A queue that matches, and one that does not, declared through the HTTP API.
  await api('PUT', `/queues/%2F/${QUEUE}`, { durable: true, auto_delete: false, arguments: {} });
  await api('PUT', '/queues/%2F/plain_queue', { durable: false, auto_delete: false, arguments: {} });
  await api('POST', '/exchanges/%2F/amq.default/publish',
    { routing_key: QUEUE, payload: 'hello', payload_encoding: 'string', properties: {} });

  await page.click('#tabs a[data-tab="queues"]');
  const row = page.locator(`#queues tr[data-queue="${QUEUE}"]`);
  await row.waitFor();
  await page.waitForFunction((q) => {
    const tr = document.querySelector(`#queues tr[data-queue="${q}"]`);
    return tr && tr.querySelector('a.policy');
  }, QUEUE, { timeout: 15000 });
  const link = row.locator('td.features a.policy');
  check((await link.textContent()) === POLICY, `the Queues page shows policy ${POLICY} on ${QUEUE}`);
  check((await link.getAttribute('href')).startsWith('#/admin/policies/'), 'the policy links to Admin');
  check((await row.locator('td').nth(2).textContent()).includes('@'), 'the Node column names the leader');
  check((await row.locator('td').nth(5).textContent()).trim() === '1', 'Ready counts the published message');
  check(await page.locator('#queues tr[data-queue="plain_queue"] a.policy').count() === 0,
    'a queue that does not match shows no policy');

  // The Node column's mirror badges (RabbitMQ's rendering), fed a mirrored queue as the
  // API reports one: +1 synchronised, and a red +1 for the unsynchronised mirror.
  const badges = await page.evaluate(() => {
    const div = document.createElement('div');
    div.innerHTML = nodeCell({ node: 'warren@a', slave_nodes: ['warren@b', 'warren@c'],
      synchronised_slave_nodes: ['warren@b'] });
    return [...div.querySelectorAll('.badge')].map((b) => [b.className, b.textContent, b.title]);
  });
  check(JSON.stringify(badges) === JSON.stringify([
    ['badge', '+1', 'Synchronised mirrors: warren@b'],
    ['badge warning', '+1', 'Unsynchronised mirrors: warren@c']]), `mirror badges ${JSON.stringify(badges)}`);

  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot of the Queues page: ${shot}`);

  // The policy link opens Admin with the policy loaded in the form.
  await link.click();
  await page.waitForFunction((name) => document.querySelector('#policy-name')?.value === name, POLICY);
  check(true, 'the policy link opens the policy in the Admin form');

  // The queue page: get the message back (requeued), then the other tabs render.
  await page.goto(`${base}/#/queues/%2F/${QUEUE}`);
  await page.waitForSelector('#queue-facts table');
  check((await page.textContent('#queue-facts')).includes(POLICY), 'the queue page names the policy');
  await page.click('#get-form button[type="submit"]');
  await page.waitForSelector('#got pre.payload');
  check((await page.textContent('#got pre.payload')) === 'hello', 'Get messages shows the payload');
  for (const [tab, sel, text] of [['exchanges', '#exchanges', 'amq.topic'],
    ['connections', '#connections', 'No connections.'], ['channels', '#channels', 'No channels.']]) {
    await page.click(`#tabs a[data-tab="${tab}"]`);
    await page.waitForFunction(([s, t]) => document.querySelector(s)?.textContent.includes(t), [sel, text]);
    check(true, `the ${tab} page renders`);
  }
  check(!failed, 'no script errors on any page');
} catch (e) {
  failed = true;
  console.error(`FAILED: ${e.message}`);
  await page.screenshot({ path: shot.replace(/\.png$/, '-failure.png'), fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
