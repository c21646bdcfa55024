"""Jobs, locks and events are registered in the admin by ``ovmweb.inventory.admin_activity``:
who may see them follows the inventory objects they are about, and jobs sit below inventory."""
