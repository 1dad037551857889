-- Retention deletes a delivery with the replies to it: without this index
-- each deleted delivery would scan every inbound message (twice: the
-- delete, then the foreign key's check).
CREATE INDEX inbound_messages_by_delivery ON inbound_messages (delivery_id);
