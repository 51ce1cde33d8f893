-- A pending support action can be declined instead of approved: rejected by
-- another operator, or withdrawn by the one who asked. Either is final, is
-- never performed, and records who, why and when beside the action.
-- Re-baselining a hot key's or treasury's reconciliation gap is a support
-- action too (a dangerous one: it needs a second operator when asked to).

ALTER TABLE support_actions DROP CONSTRAINT support_actions_action_check;
ALTER TABLE support_actions ADD CONSTRAINT support_actions_action_check
    CHECK (action IN ('accept_as_paid', 'request_top_up', 'refund_excess', 'refund_whole',
                      'mark_for_review', 'attach_transaction', 'redeliver_webhooks',
                      'acknowledge', 'rebaseline'));

ALTER TABLE support_actions DROP CONSTRAINT support_actions_state_check;
ALTER TABLE support_actions ADD CONSTRAINT support_actions_state_check
    CHECK (state IN ('done', 'pending_approval', 'rejected', 'withdrawn'));
ALTER TABLE support_actions
    ADD COLUMN decider        text,
    ADD COLUMN decide_reason  text,
    ADD COLUMN decide_time    timestamptz,
    -- Declined: by whom, why and when, and nobody approved it.
    ADD CONSTRAINT support_actions_declined CHECK (
        (state IN ('rejected', 'withdrawn')) =
        (decider IS NOT NULL AND decide_reason <> '' AND decide_time IS NOT NULL)),
    ADD CONSTRAINT support_actions_declined_unapproved CHECK (
        state NOT IN ('rejected', 'withdrawn') OR approver IS NULL),
    -- A rejection is another operator's; a withdrawal the requester's own.
    ADD CONSTRAINT support_actions_decider CHECK (
        (state <> 'rejected' OR decider <> actor) AND (state <> 'withdrawn' OR decider = actor));
