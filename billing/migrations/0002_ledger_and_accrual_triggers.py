"""The invariants PostgreSQL enforces for billing, whatever writes to it:

- a ledger transaction's legs sum to zero per currency, checked at commit (a DEFERRABLE
  INITIALLY DEFERRED constraint trigger: legs of one transaction may be inserted one by
  one), and a leg's currency is its account's;
- ledger legs and transactions are append-only (UPDATE and DELETE refused);
- an accrual's figures (base, rate, amount, currency, period, schedule version, shares)
  never change after insert, and an accrual is never deleted: it is reversed.
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION billing_ledger_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT currency, SUM(amount) AS total INTO bad
      FROM billing_ledgerleg WHERE transaction_id = NEW.transaction_id
     GROUP BY currency HAVING SUM(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: its % legs sum to %',
            NEW.transaction_id, bad.currency, bad.total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER billing_ledgerleg_balanced
    AFTER INSERT ON billing_ledgerleg
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing_ledger_balanced();

CREATE FUNCTION billing_ledgerleg_currency() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.currency <> (SELECT currency FROM billing_ledgeraccount WHERE id = NEW.account_id) THEN
        RAISE EXCEPTION 'ledger leg in % on an account kept in another currency', NEW.currency
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER billing_ledgerleg_currency
    BEFORE INSERT ON billing_ledgerleg
    FOR EACH ROW EXECUTE FUNCTION billing_ledgerleg_currency();

CREATE FUNCTION billing_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused (post a reversing transaction instead)',
        TG_TABLE_NAME, TG_OP USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER billing_ledgerleg_append_only
    BEFORE UPDATE OR DELETE ON billing_ledgerleg
    FOR EACH ROW EXECUTE FUNCTION billing_append_only();

CREATE TRIGGER billing_ledgertransaction_append_only
    BEFORE UPDATE OR DELETE ON billing_ledgertransaction
    FOR EACH ROW EXECUTE FUNCTION billing_append_only();

CREATE FUNCTION billing_feeaccrual_figures_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'fee accrual % cannot be deleted: reverse it', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF (NEW.base_amount, NEW.rate, NEW.amount, NEW.currency, NEW.period_start,
        NEW.period_end, NEW.schedule_id, NEW.schedule_version, NEW.kind,
        NEW.subscription_id, NEW.master_share, NEW.broker_share, NEW.ib_share)
       IS DISTINCT FROM
       (OLD.base_amount, OLD.rate, OLD.amount, OLD.currency, OLD.period_start,
        OLD.period_end, OLD.schedule_id, OLD.schedule_version, OLD.kind,
        OLD.subscription_id, OLD.master_share, OLD.broker_share, OLD.ib_share) THEN
        RAISE EXCEPTION 'fee accrual % figures are fixed once accrued: reverse it instead', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER billing_feeaccrual_figures_fixed
    BEFORE UPDATE OR DELETE ON billing_feeaccrual
    FOR EACH ROW EXECUTE FUNCTION billing_feeaccrual_figures_fixed();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS billing_feeaccrual_figures_fixed ON billing_feeaccrual;
DROP FUNCTION IF EXISTS billing_feeaccrual_figures_fixed();
DROP TRIGGER IF EXISTS billing_ledgertransaction_append_only ON billing_ledgertransaction;
DROP TRIGGER IF EXISTS billing_ledgerleg_append_only ON billing_ledgerleg;
DROP FUNCTION IF EXISTS billing_append_only();
DROP TRIGGER IF EXISTS billing_ledgerleg_currency ON billing_ledgerleg;
DROP FUNCTION IF EXISTS billing_ledgerleg_currency();
DROP TRIGGER IF EXISTS billing_ledgerleg_balanced ON billing_ledgerleg;
DROP FUNCTION IF EXISTS billing_ledger_balanced();
"""


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
