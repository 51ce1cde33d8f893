-- A sweep's gas limit, fixed when it is planned: a token sweep's comes from the node's
-- estimate of the transfer (EstimateTransferGas) plus a margin, and its gas funding pays for
-- exactly that limit at the sweep's fixed fees; the worker builds the transaction with it.
-- NULL: the asset's default limit (payouts, refunds, gas fundings, sweeps planned before).
ALTER TABLE payouts ADD COLUMN fixed_gas_limit bigint CHECK (fixed_gas_limit > 0);
