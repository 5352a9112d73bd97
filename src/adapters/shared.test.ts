import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { tool } from 'ai';
import { z } from 'zod';
import { memoryApprovalStore } from '../approvals/memory.js';
import type { ApprovalStore } from '../approvals/types.js';
import { createExecLayer, type ExecLayer } from '../runtime/exec-layer.js';
import type { Decision } from '../types.js';
import { withExecLayer } from './ai-sdk.js';
import { type AdapterLayer, authorizeCall, runAllowed, ToolCallRefusedError } from './shared.js';

const policy = {
  version: 1,
  agents: { 'support-bot': { owner: 'support@acme.com', purpose: 'answer tickets', roles: ['support'] } },
  roles: {
    support: [
      { id: 'internal-email', allow: 'email.send', when: { email: { to_domains: ['acme.com'] } } },
      {
        id: 'external-email',
        ask: 'email.send',
        unless: { email: { to_domains: ['acme.com'] } },
        reason: 'email outside acme.com needs approval',
      },
    ],
  },
};

const options = { toolCallId: 'call-1', messages: [] };

describe('adapter approvals and failure handling', () => {
  let layer: ExecLayer;
  let approvals: ApprovalStore;
  before(async () => {
    approvals = memoryApprovalStore();
    layer = await createExecLayer({ policy, approvals });
  });
  after(async () => {
    await layer.close();
    await approvals.close();
  });

  function mailer() {
    const sent: string[] = [];
    const tools = {
      send: tool({
        inputSchema: z.object({ to: z.string(), subject: z.string() }),
        execute: async ({ to }) => {
          sent.push(to);
          return `sent to ${to}`;
        },
      }),
    };
    return { sent, tools };
  }

  it('reports a pending approval to the model, then runs the same call once it is granted', async () => {
    const { sent, tools: raw } = mailer();
    const tools = withExecLayer(layer, raw, { agent: 'support-bot', prefix: 'email.' });
    const args = { to: 'ceo@example.com', subject: 'refund' };
    const refused = await Promise.resolve(tools.send.execute?.(args, options)).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(refused instanceof ToolCallRefusedError);
    assert.equal(refused.code, 'approval_required');
    const id = refused.decision.approvalId;
    assert.ok(id, 'a pending approval was created');
    assert.match(refused.message, new RegExp(`execlayer approvals approve ${id}`));
    assert.deepEqual(sent, []);

    await approvals.decide(id, { approve: true, approver: 'lead@acme.com' }, Date.now());
    assert.equal(await tools.send.execute?.(args, options), 'sent to ceo@example.com');
    assert.deepEqual(sent, ['ceo@example.com']);
    // The grant was single use: the same call asks again.
    await assert.rejects(Promise.resolve(tools.send.execute?.(args, options)), ToolCallRefusedError);
    assert.equal(sent.length, 1);
  });

  it('with approvalTimeoutMs, waits for the reviewer and runs the call when granted', async () => {
    const { sent, tools: raw } = mailer();
    const decisions: Decision[] = [];
    const tools = withExecLayer(layer, raw, {
      agent: 'support-bot',
      prefix: 'email.',
      approvalTimeoutMs: 10_000,
      onDecision: (d) => decisions.push(d),
    });
    const args = { to: 'partner@example.org', subject: 'contract' };
    const running = Promise.resolve(tools.send.execute?.(args, options));
    let pending: string | undefined;
    for (let i = 0; i < 200 && !pending; i++) {
      await new Promise((r) => setTimeout(r, 10));
      pending = (await approvals.list({ status: 'pending' })).find((a) => a.agent === 'support-bot')?.id;
    }
    assert.ok(pending, 'the call created a pending approval');
    await approvals.decide(pending, { approve: true, approver: 'lead@acme.com' }, Date.now());
    assert.equal(await running, 'sent to partner@example.org');
    assert.deepEqual(sent, ['partner@example.org']);
    assert.deepEqual(
      decisions.map((d) => d.code),
      ['approval_granted'],
    );
  });

  it('with approvalTimeoutMs, a denied approval refuses the call', async () => {
    const { sent, tools: raw } = mailer();
    const tools = withExecLayer(layer, raw, {
      agent: 'support-bot',
      prefix: 'email.',
      approvalTimeoutMs: 10_000,
    });
    const running = Promise.resolve(
      tools.send.execute?.({ to: 'x@example.net', subject: 's' }, options),
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    let pending: string | undefined;
    for (let i = 0; i < 200 && !pending; i++) {
      await new Promise((r) => setTimeout(r, 10));
      pending = (await approvals.list({ status: 'pending' })).find(
        (a) => a.args && JSON.stringify(a.args).includes('x@example.net'),
      )?.id;
    }
    assert.ok(pending);
    await approvals.decide(pending, { approve: false, approver: 'lead@acme.com' }, Date.now());
    const refused = await running;
    assert.ok(refused instanceof ToolCallRefusedError);
    assert.equal(refused.decision.effect, 'ask');
    assert.deepEqual(sent, []);
  });

  it('fails closed when authorization itself fails, and keeps a finished result when its outcome cannot be recorded', async () => {
    const broken: AdapterLayer = {
      authorize: async () => {
        throw new Error('store unreachable');
      },
      outcome: async () => {},
      waitForApproval: async () => 'denied',
    };
    const verdict = await authorizeCall(broken, { agent: 'a', tool: 't', args: {} }, { agent: 'a' });
    assert.equal(verdict.allowed, false);
    assert.equal(verdict.decision.code, 'internal_error');
    assert.match(verdict.decision.reason, /store unreachable/);

    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    const unrecorded: AdapterLayer = {
      authorize: layer.authorize.bind(layer),
      outcome: async () => {
        throw new Error('audit log full');
      },
      waitForApproval: layer.waitForApproval.bind(layer),
    };
    const d = await layer.authorize({ agent: 'support-bot', tool: 'email.send', args: { to: 'a@acme.com' } });
    assert.equal(d.effect, 'allow');
    assert.equal(await runAllowed(unrecorded, d, async () => 'done'), 'done');
    await new Promise((r) => setImmediate(r));
    process.off('warning', onWarning);
    assert.ok(warnings.some((w) => w.includes('audit log full') && w.includes(d.id)));
  });
});
